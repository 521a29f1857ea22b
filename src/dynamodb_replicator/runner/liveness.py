"""Whether the process named by a worker id's claim is dead, as this process can prove it.

A claim names its process (``instance``): host, pid and a random part, then after ``@``
where that pid means something: the kernel's boot id, the pid namespace, the pid and the
process's start time. A process restarted under the same worker id on the same machine
(a supervisor, the soak) can then see its predecessor is gone instead of waiting for its
claim to expire (runner/claims.py). Only a proof counts: another host, kernel or namespace, a
``/proc`` that does not answer, or a pid that exists but cannot be read, all say "alive".
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

__all__ = ["dead", "this_instance"]

_PROC = Path("/proc")


def this_instance() -> str:
    """This process's claim name: unique, and checkable by ``dead`` on this machine."""
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    place, started = _place(), _started(os.getpid())
    if place is None or started is None:
        return name  # no /proc: a successor waits for the claim to expire
    return f"{name}@{place}/{os.getpid()}/{started}"


def dead(instance: str) -> bool:
    """True only when ``instance`` is a process of this host, kernel and pid namespace that is
    gone: no such pid, a pid now held by a process started at another time, or a zombie
    (killed, not yet reaped: it runs no code and holds no connection) whose every thread
    is one too (a main thread that exited alone leaves the others running)."""
    name, at, where = instance.rpartition("@")
    parts = where.split("/")
    if not at or len(parts) != 4 or not parts[2].isdigit():
        return False
    boot, namespace, pid, started = parts
    if _place() != f"{boot}/{namespace}":
        return False  # its pid means nothing here
    if name.rsplit("-", 2)[0] != socket.gethostname():
        # Another host: VMs cloned from one snapshot share the boot id and the initial
        # pid namespace (docs/concepts/guarantees.md), not the host name.
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, another user's: alive
    stat = _stat(int(pid))
    if stat is None:
        return False  # cannot tell: alive
    state, now_started = stat
    if now_started != started:
        return True  # the pid was reused
    return state in ("Z", "X") and not _threads_run(int(pid))


def _threads_run(pid: int) -> bool:
    """Whether a thread of ``pid`` other than a zombie runs: ``/proc/PID/stat`` tells the
    main thread's state alone, and a main thread that exited leaves a zombie leader while
    the other threads still run code and hold connections. Unreadable: they run."""
    try:
        tasks = [task.name for task in (_PROC / str(pid) / "task").iterdir()]
    except OSError:
        return True
    for task in tasks:
        stat = _stat_file(_PROC / str(pid) / "task" / task / "stat")
        if stat is not None and stat[0] not in ("Z", "X"):
            return True
    return False


def _place() -> str | None:
    """This kernel's boot id and this process's pid namespace; None unless ``/proc`` is
    this pid namespace's (a ``/proc`` of another namespace would tell of other pids)."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")
        own = (_PROC / "self/stat").read_text().split(" ", 1)[0]
    except OSError:
        return None
    return f"{boot}/{namespace}" if own == str(os.getpid()) else None


def _started(pid: int) -> str | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid``; None when unreadable."""
    return _stat_file(_PROC / str(pid) / "stat")


def _stat_file(path: Path) -> tuple[str, str] | None:
    """(state, start time) from a ``stat`` file of ``/proc``; None when unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]
