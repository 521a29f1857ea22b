"""Adversarial review of the control path (#23): per-region renewals and the take-over of a
worker id whose process is proven dead. Each test pins a defect it found."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_dead_claim_takeover import (
    A0,
    PRINTS_ITS_INSTANCE,
    a_dead_instance,
    a_successor,
    holding,
    passing,
)

B0 = ShardRef("Orders", "arn:b/stream/Orders", "b-0")


class SteppingClock(ManualClock):
    """A wall clock that may step (``stepped`` seconds so far) and a monotonic one that
    does not, as SystemClock's ``now`` and ``elapsed``."""

    def __init__(self) -> None:
        super().__init__()
        self.stepped = 0.0

    def elapsed(self) -> float:
        return self.t - self.stepped


# The wait after the proof is measured on the monotonic reading (clock.elapsed): an NTP
# step forward during it must not cut the margin short, while a request the dead process
# sent just before dying may still land for up to its lifetime (< margin, 0.5 s).
def test_the_take_over_waits_a_margin_of_elapsed_time_even_when_the_clock_steps() -> None:
    clock = SteppingClock()
    table = LeaseTable(clock)
    holding(a_dead_instance(), clock, table)  # margin 0.5 s
    clock.t = 1000.5
    sent: list[float] = []  # elapsed time when each of the successor's requests went out
    elapsed = [0.0]

    def request(_call: str) -> None:
        sent.append(elapsed[0])
        elapsed[0] += 0.1  # each request takes 0.1 s, on both clocks
        passing(clock)
        if len(sent) == 2:
            clock.t += 0.5  # the wall clock steps forward (NTP), no time passes
            clock.stepped += 0.5

    successor = a_successor(clock, table, request)
    successor.claim("a", threading.Event())
    # The state the test is about: the claim was taken over from the process proven dead.
    assert table.workers["w1"][0] == successor.instance and len(sent) >= 2
    proof = sent[0] + 0.1  # the first refusal answered: the holder is proven dead then
    assert sent[-1] - proof >= successor.margin - 1e-9


def _leader_exited(pid: int) -> bool:
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _poll_leader_exit(pid: int) -> None:
    """Until ``pid``'s main thread has exited (within milliseconds), 10 s at most."""
    for _ in range(2000):
        if _leader_exited(pid):
            return
        threading.Event().wait(0.005)


_EXIT = {"x86_64": 60, "aarch64": 93}.get(os.uname().machine)
_LEADER_EXITS = (
    "import ctypes, os, sys, threading\n"
    "from dynamodb_replicator.runner.liveness import this_instance\n"
    "def serve():\n"
    "    sys.stdin.read()  # runs, holding its connections, until the test lets it go\n"
    "    os._exit(0)\n"
    "threading.Thread(target=serve).start()\n"
    "print(this_instance(), flush=True)\n"
    f"ctypes.CDLL(None).syscall({_EXIT}, 0)  # exit(2): the main thread alone ends\n"
)


# liveness.dead must not read the thread-group leader's state alone: a process whose main
# thread exited while its other threads run shows 'Z' in /proc/PID/stat, yet still runs code
# and holds connections; its claim must not be taken over.
@pytest.mark.skipif(_EXIT is None, reason="exit(2)'s number is known for x86_64 and aarch64")
def test_a_process_whose_main_thread_exited_while_others_run_is_not_dead() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _LEADER_EXITS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        instance = child.stdout.readline().strip()
        pid = child.pid
        _poll_leader_exit(pid)
        # The state the test is about: the leader is a zombie, the process still runs.
        assert _leader_exited(pid) and child.poll() is None
        assert len(list((Path("/proc") / str(pid) / "task").iterdir())) >= 2
        assert not liveness.dead(instance)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def test_a_killed_process_not_yet_reaped_is_dead() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", PRINTS_ITS_INSTANCE], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        instance = child.stdout.readline().strip()
        _poll_leader_exit(child.pid)  # poll, never wait(): waiting would reap it
        # The state the test is about: a zombie, every thread of it gone, not reaped.
        assert _leader_exited(child.pid)
        assert liveness.dead(instance)
    finally:
        child.wait(timeout=10)


# A reload that lengthens the lease (reconfigure.restart_all sets keeper.lease_seconds and
# connects clients with the longer request timeout) must write the wider margin into the
# claim before a lease is taken under it: else a successor with the old config that proves
# this process dead meanwhile waits the old margin (0.5 s) while requests live 0.6 s.
def test_a_lease_lengthened_by_a_reload_is_in_the_claims_margin_before_a_lease_is_taken() -> None:
    clock = ManualClock()
    table = LeaseTable(clock)
    keeper = holding(liveness.this_instance(), clock, table)  # margin 0.5 s
    assert table.margins["w1"] == 500
    keeper.lease_seconds = 3.0  # the reload: margin 0.75 s, default request timeout 0.6 s
    clock.t = 1000.2
    lease = keeper.acquire("a", ShardRef("Orders", "arn:a/stream/Orders", "a-1"))
    # The state the test is about: a lease under the new config, its writes about to start.
    assert lease is not None and lease.margin == 0.75
    assert table.margins["w1"] >= 750


# A region unreachable at start is claimed later by acquire: through the same take-over
# path as at start (try_claim), or the dead predecessor's claim there refuses it until it
# expires, and its shards wait the whole lease the take-over was meant to save.
def test_a_region_unreachable_at_start_is_taken_over_from_the_dead_predecessor_too() -> None:
    clock = ManualClock()
    tables = {"a": LeaseTable(clock), "b": LeaseTable(clock)}
    dead = LeaseKeeper("w1", a_dead_instance(), clock, 2.0)
    dead.stores = {name: MemoryStateStore(table) for name, table in tables.items()}
    assert dead.acquire("a", A0) is not None and dead.acquire("b", B0) is not None
    clock.t = 1000.5

    def request(_call: str) -> None:
        passing(clock)

    successor = a_successor(clock, tables["a"], request)  # b does not answer
    successor.claim("a", threading.Event())
    assert tables["a"].workers["w1"][0] == successor.instance
    successor.stores = {**successor.stores, "b": MemoryStateStore(tables["b"], request)}
    # The state the test is about: b answers again, its claim still the dead one's.
    assert tables["b"].workers["w1"] == (dead.instance, 1002_000) and clock.t < 1001.5
    taken = None
    while taken is None and clock.t < 1001.5:
        try:
            taken = successor.acquire("b", B0)
        except WorkerIdInUseError:
            clock.t = round(clock.t + 0.2, 3)  # the next round
    assert taken is not None and clock.t < 1002.0


def test_a_claim_named_by_another_host_is_not_dead_even_with_this_boot_and_namespace() -> None:
    # VMs cloned from one snapshot share the boot id and the initial pid namespace: the
    # host name the claim carries must match too before a pid there means anything.
    gone = a_dead_instance()
    assert liveness.dead(gone)  # the state the test is about: provably dead, on this host
    host = socket.gethostname()
    assert gone.startswith(f"{host}-")
    assert not liveness.dead(f"clone-of-{host}{gone[len(host) :]}")
