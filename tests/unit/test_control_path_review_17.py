"""Review 17 of the control path (tests only, on main 09672eb): review 16's two fixes (a
signal's line written on a daemon thread, waited ``SAY_WITHIN_SECONDS`` at most;
``Signals.__enter__`` undoing itself when an install raises) attacked first, then
cli/signals.py and its users, then the whole path against docs/concepts/guarantees.md
(Timing and clocks) and docs/operating/runner.md.

Reproduced (strict xfails; 1 and 3 fixed on main as their fix shapes below, each test failing
again with its fix reverted; 2 still a strict xfail; nothing lost, resurrected or landed
late in any). Fix shapes tried for 1 and 3 (src edits, reverted): ``_on_signal``'s line in a
``try`` with ``stop.set()`` / ``os._exit`` in its ``finally`` (review 15's shape, kept
around ``_say_within``), and ``Signals.__enter__``'s thread started inside the ``try``
(``_thread`` set once started): both tests pass, and test_interrupt.py and reviews 15
and 16 still pass. None tried for 2 (the say-thread must not hold stderr's lock past the
command, or the command must end by ``os._exit`` when a line is still out).

1. (low; liveness, a regression of 09672eb) When the "stopping" line's thread cannot be
   started (``RuntimeError: can't start new thread``: a container's pids limit or
   ``ulimit -u`` reached, as a copy with many segments and writer pools may), no Ctrl-C or
   SIGTERM stops the command: ``_say_within`` raises in ``_on_signal`` before
   ``stop.set()``, ``_deliver`` logs "signal not handled" and goes on, ``stop`` stays
   clear; the second signal finds it clear again and fails the same way, so its
   ``os._exit`` never comes either. Review 15's fix had the line in a ``try`` with
   ``stop.set()`` (and ``os._exit``) in its ``finally``; 09672eb replaced both with
   ``_say_within`` and dropped the ``finally``s. Only SIGKILL ends it; nothing is lost.
   (``test_a_ctrl_c_whose_line_thread_cannot_be_started_still_stops_the_work``)
2. (very low; liveness at exit, a consequence of review 16's daemon say-thread) A Ctrl-C
   in the last second of a long command whose stderr blocks (a pipe nobody reads, a
   terminal paused: review 16's case) makes the command, its work finished, hang at exit
   for as long as stderr blocks; no Ctrl-C ends it. ``_on_signal`` starts the "stopping"
   line's daemon thread, which blocks in the write *holding the lock of stderr's
   BufferedWriter*; the work ended before ``stop`` was set (the commands check it after
   each table; in ``join_copy.copy`` the writers' ``close`` runs after the last check), so
   ``report`` is not called and the command returns 0. At exit ``logging.shutdown``
   (atexit; ``main``'s ``_end_interrupted`` calls it too) flushes ``logging.lastResort``'s
   stream, ``sys.stderr``: an untimed wait for the lock the daemon thread holds, which no
   signal interrupts (the handlers are the restored ones: ``default_int_handler`` only
   trips a flag). Only SIGTERM/SIGKILL or stderr draining end it (add-region.md: "A
   second Ctrl-C stops at once"). Without that atexit flush the teardown's own flush of
   stderr ends in "Fatal Python error: _enter_buffered_busy: could not acquire lock for
   <_io.BufferedWriter name='<stderr>'> at interpreter shutdown, possibly due to daemon
   threads" and SIGABRT (seen with ``atexit.unregister(logging.shutdown)``). Under
   ``PYTHONUNBUFFERED`` (stderr a bare FileIO, no lock) it exits 0, the line lost.
   (``test_a_ctrl_c_as_the_work_ends_with_stderr_blocked_lets_the_command_exit``)
3. (very low; a leak, no signal lost) ``Signals.__enter__`` opens its pipe before it starts
   its thread, outside the ``try`` that undoes it: when the thread cannot be started
   (``RuntimeError: can't start new thread``: a thread or memory limit reached) both pipe
   ends stay open. No handler was installed, so no signal is lost; the CLI then exits
   (an unexpected error), so only an embedding that runs commands again meets it: two
   descriptors per attempt. Review 16's fix covered a failed install, not this.
   (``test_a_signals_thread_that_cannot_be_started_leaves_no_pipe_behind``)

Pinned here (passing): with stderr blocked, the first Ctrl-C still stops the work (its
line waited ``SAY_WITHIN_SECONDS`` at most), ``report``'s line queues behind the blocked
"stopping" line (both on stderr's BufferedWriter lock), and once stderr drains the two
come in that order and the command exits 130 (fails with review 16's fix reverted:
"stopping" said inline before ``stop.set()``).

What held (tried, reasoned, not pinned again):

- Line order with a slow or blocked stream: ``report`` (main thread) and the say-thread
  both end in stderr's BufferedWriter, whose lock the say-thread takes first once it has
  started; only a say-thread not scheduled for a whole ``SAY_WITHIN_SECONDS`` can be
  overtaken (cosmetic: "interrupted" before "stopping"). Not reproducible without a
  harness stream; not pinned.
- A line lost when the process exits: only the second Ctrl-C's ("stopped at once"), when
  stderr blocks, by design (``os._exit`` after 1 s; no teardown, so no abort there).
- Repeated Interruptions with a blocked stream: each leaves one daemon say-thread blocked
  until the stream drains (harmless while the process lives; defect 2 at its end).
- A signal during ``Signals.__enter__`` before the thread starts or between installs: the
  handler is not installed yet, the signal goes to the previous handler (review 16).
  ``__exit__`` while a callback runs or blocks: joined; ``Interruption``'s callback is
  bounded by ``SAY_WITHIN_SECONDS`` now. A callback's ``os._exit`` during ``__exit__``: the
  process ends 130 (no teardown, so defect 2's abort cannot follow).
- ``run``'s callback logs "stopping" before ``runner.stop_soon()``: with stderr blocked it
  blocks there and SIGTERM does not stop the runner. Not a separate defect: the runner's
  own INFO lines (acquired, released) and its shutdown's block on the same handler, so a
  blocked stderr stalls a runner whatever the order.
- A previous handler ``None`` (installed from C by an embedding host): ``__exit__``'s
  ``signal.signal(n, None)`` would raise TypeError, leaving the other handler, pipe and
  thread. Unreachable from the console script (a fresh interpreter sees SIG_DFL or
  SIG_IGN only); not pinned.
- ``run`` whose metrics server cannot bind (port in use) after ``runner.start()``: exit
  2 with the worker id claimed and no lease taken (the keeper is started by ``run`` only);
  the claim runs out on its own (a restart on the same machine proves the process dead):
  not pinned for good.
- The control-plane simulations on fresh seeds from 8000000, none violated (each module's
  ``run`` and ``violations`` seed by seed, 40 s a run, one at a time): shard_sim.py 2963
  (8000000-8002962), shard_sim_steps.py 2581 (8000000-8002580), the base simulation 8800
  (8000000-8008799), clock steps 10341 (8000000-8010340), dropped leases under steps 9812
  (8000000-8009811), late landings 8964 (8000000-8008963).
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types

import pytest

from dynamodb_replicator.cli import interrupt as interrupt_module
from dynamodb_replicator.cli import signals as signals_module
from dynamodb_replicator.cli.interrupt import Interruption
from dynamodb_replicator.cli.signals import Signals

from .test_control_path_review_16 import _pipes
from .test_interrupt import _line_within

# stderr a pipe nobody reads: filled byte by byte (small writes merge into a pipe's last
# page, so it ends full to the byte), so the next write to fd 2 blocks.
FILL_STDERR = """
import os
os.set_blocking(2, False)
try:
    while True:
        os.write(2, b"x")
except BlockingIOError:
    pass
os.set_blocking(2, True)
"""

# The work ends as the Ctrl-C is taken (its line being written, blocked), before ``stop``
# is set: the command saw no stop at its last check and returns 0, as version_items and
# join_copy do.
ENDS_AS_CTRL_C_COMES = (
    FILL_STDERR
    + """
import sys, threading
from dynamodb_replicator.cli.interrupt import Interruption

with Interruption(resume="tool --resume") as interruption:
    print("working", flush=True)
    while not (
        interruption.stop.is_set()
        or any(t.name == "interruption-say" for t in threading.enumerate())
    ):
        threading.Event().wait(0.01)
print("done", flush=True)
sys.exit(0)
"""
)

# The work stops at the first Ctrl-C and says how to resume, inside the ``with`` as the
# commands do.
STOPS_AT_CTRL_C = (
    FILL_STDERR
    + """
import sys
from dynamodb_replicator.cli.interrupt import Interruption

with Interruption(resume="tool --resume") as interruption:
    print("working", flush=True)
    interruption.stop.wait()
    print("stopped", flush=True)
    sys.exit(interruption.report())
"""
)


class _Unstartable(threading.Thread):
    """A thread the system cannot start (a thread or memory limit reached)."""

    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def _start(script: str) -> subprocess.Popen[str]:
    # As a shell starts it: stderr through a BufferedWriter (PYTHONUNBUFFERED, set where
    # the tests run, would make it a bare FileIO, with no lock).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert _line_within(process, 60) == "working\n"
    return process


@pytest.mark.xfail(
    strict=True,
    reason="the Ctrl-C's daemon say-thread holds stderr's buffer lock: the exit's flush of "
    "stderr (logging.shutdown) waits for it as long as stderr blocks",
)
def test_a_ctrl_c_as_the_work_ends_with_stderr_blocked_lets_the_command_exit() -> None:
    """Interleaving: a long command under ``Interruption`` (stderr, a pipe nobody reads);
    a Ctrl-C comes in its last second: ``_on_signal``'s say-thread blocks writing
    "stopping" (holding stderr's BufferedWriter lock), and the work ends before ``stop``
    is set (its last check already made). ``__exit__`` joins the signals' thread (which
    sets ``stop`` after ``SAY_WITHIN_SECONDS``), the command returns 0; at exit,
    ``logging.shutdown`` flushes stderr and waits for the lock, untimed."""
    process = _start(ENDS_AS_CTRL_C_COMES)
    try:
        process.send_signal(signal.SIGINT)
        # The state this test is about: the work ended after the Ctrl-C was taken.
        assert _line_within(process, 60) == "done\n"
        try:
            code = process.wait(timeout=15)  # stderr still blocked: nothing drains it
        except subprocess.TimeoutExpired:
            raise AssertionError("the command hangs at exit on the blocked stderr") from None
        assert code == 0
    finally:
        process.kill()
        process.wait()


def test_the_first_ctrl_c_stops_the_work_with_stderr_blocked_and_its_lines_come_in_order() -> None:
    """A Ctrl-C to a long command whose stderr blocks: the work still stops (its line
    waited ``SAY_WITHIN_SECONDS`` at most), ``report`` then blocks on stderr behind the
    "stopping" line, and once stderr drains the two lines come in order, exit 130."""
    process = _start(STOPS_AT_CTRL_C)
    try:
        process.send_signal(signal.SIGINT)
        # The state: the work stopped while stderr blocks (``report``'s line waits on it).
        assert _line_within(process, 30) == "stopped\n"
        assert process.poll() is None
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 130
        assert err.lstrip("x").splitlines() == [
            "stopping: saving the resume point (Ctrl-C again to stop at once)",
            "interrupted, resume point saved; resume with: tool --resume",
        ]
    finally:
        process.kill()
        process.wait()


def _not_handled(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.getMessage() == "signal not handled" for r in caplog.records)


def test_a_ctrl_c_whose_line_thread_cannot_be_started_still_stops_the_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Interleaving: a long command under ``Interruption`` in a process that cannot start
    another thread; a Ctrl-C reaches ``_on_signal`` on the signals' thread (started
    before the limit was reached), whose ``_say_within`` raises starting the line's
    thread: ``stop.set()`` after it is skipped, ``_deliver`` logs the failure and goes on.
    The work never sees a stop (and a second Ctrl-C fails the same way, before its
    ``os._exit``)."""
    caplog.set_level(logging.ERROR, logger=signals_module.__name__)
    with Interruption(resume="tool --resume", stream=io.StringIO()) as interruption:
        monkeypatch.setattr(
            interrupt_module,
            "threading",
            types.SimpleNamespace(Thread=_Unstartable, Event=threading.Event),
        )
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 30
        while not (interruption.stop.is_set() or _not_handled(caplog)):
            assert time.monotonic() < deadline, "the Ctrl-C was not taken"
            interruption.stop.wait(0.01)
        # The state: the Ctrl-C was taken (the work stopped, or the failure logged).
        assert interruption.stop.is_set(), "a Ctrl-C taken did not stop the work"


def test_a_signals_thread_that_cannot_be_started_leaves_no_pipe_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving: ``Signals.__enter__`` opens its pipe, then starting its thread raises
    (``RuntimeError: can't start new thread``); the ``try`` that undoes a failed install
    begins after it: both pipe ends stay open (no handler was installed)."""
    monkeypatch.setattr(signals_module, "threading", types.SimpleNamespace(Thread=_Unstartable))
    handler = signal.getsignal(signal.SIGUSR1)
    pipes = _pipes()
    signals = Signals((signal.SIGUSR1,), lambda _number: None)
    try:
        with pytest.raises(RuntimeError):
            signals.__enter__()
        # The state: ``__enter__`` raised, and installed nothing.
        assert signal.getsignal(signal.SIGUSR1) == handler
        assert _pipes() == pipes, "the signals' pipe left open"
    finally:
        signal.signal(signal.SIGUSR1, handler)
        for end in (signals._read, signals._write):
            if end >= 0 and _pipes() > pipes:
                os.close(end)
