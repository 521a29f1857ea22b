"""A worker id whose process is proven dead (killed, on this machine) is taken over a margin
after the proof, with its leases, instead of a whole lease later; a live holder, or one this
process cannot prove dead, still refuses or waits for the claim to expire."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")


# A child process's code that prints its claim name and exits.
PRINTS_ITS_INSTANCE = (
    "from dynamodb_replicator.runner.liveness import this_instance; print(this_instance())"
)


def a_dead_instance() -> str:
    """The claim name of a process that ran on this machine and is gone (reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", PRINTS_ITS_INSTANCE], capture_output=True, check=True, text=True
    )
    return done.stdout.strip()


def passing(clock: ManualClock) -> None:
    """Each request to the state table takes 0.1 s."""
    clock.t = round(clock.t + 0.1, 3)


def holding(
    instance: str, clock: ManualClock, table: LeaseTable, lease: float = 2.0
) -> LeaseKeeper:
    """Worker id w1 claimed by ``instance`` in region a, holding A0's lease there."""
    keeper = LeaseKeeper("w1", instance, clock, lease)
    keeper.stores = {"a": MemoryStateStore(table)}
    assert keeper.acquire("a", A0) is not None
    return keeper


def a_successor(
    clock: ManualClock, table: LeaseTable, request: Callable[[str], None]
) -> LeaseKeeper:
    """This process starting as w1 in region a (lease 2 s, margin 0.5 s); ``request`` is
    called at each of its requests to the state table."""
    keeper = LeaseKeeper("w1", liveness.this_instance(), clock, 2.0)
    keeper.stores = {"a": MemoryStateStore(table, request)}
    return keeper


def test_the_claim_and_leases_of_a_killed_process_are_taken_over_before_they_expire() -> None:
    clock = ManualClock()
    table = LeaseTable(clock)
    zombie = holding(a_dead_instance(), clock, table)  # margin 0.5 s
    clock.t = 1000.5
    # The state this test is about: the claim and the lease live, their process gone.
    assert table.workers["w1"] == (zombie.instance, 1002_000)
    assert table.leases[A0].expires_ms > clock.t * 1000 and table.leases[A0].owner == "w1"
    assert liveness.dead(zombie.instance)
    successor = a_successor(clock, table, lambda _call: passing(clock))
    successor.claim("a", threading.Event())
    assert table.workers["w1"][0] == successor.instance
    assert 1001.1 <= clock.t <= 1001.2  # the margin after the proof (at 1000.6), no more
    taken = successor.acquire("a", A0)
    assert taken is not None and clock.t * 1000 < 1002_000  # before the old lease ran out


def test_a_live_holder_of_the_worker_id_is_not_taken_over() -> None:
    clock = ManualClock()
    table = LeaseTable(clock)
    live = holding(liveness.this_instance(), clock, table)  # this very process
    tries: list[str] = []
    stopping = threading.Event()

    def counted(call: str) -> None:
        tries.append(call)
        passing(clock)
        if len(tries) >= 8:  # 0.8 s of tries, past the margin: long enough to take over
            stopping.set()

    successor = a_successor(clock, table, counted)
    successor.claim("a", stopping)
    assert len(tries) >= 8 and table.workers["w1"][0] == live.instance
    assert "a" not in successor.claims


def test_a_claim_name_is_dead_only_when_this_machine_proves_it() -> None:
    me = liveness.this_instance()
    assert not liveness.dead(me)
    assert liveness.dead(a_dead_instance())
    name, _, where = me.rpartition("@")
    boot, namespace, pid, started = where.split("/")
    other_boot = "0" * len(boot)
    assert not liveness.dead(f"{name}@{other_boot}/{namespace}/999999999/{started}")
    assert not liveness.dead(f"host-{os.getpid()}-abc")  # no place: cannot tell
    assert not liveness.dead("garbage@a/b")
    # This pid with another start time: the pid was reused, the named process is gone.
    assert liveness.dead(f"{name}@{boot}/{namespace}/{pid}/{int(started) + 1}")


def test_the_wait_after_the_proof_is_the_wider_margin_of_the_dead_one_and_ours() -> None:
    """The dead process ran with a longer lease (a request timeout up to 1.5 s): its
    requests may land until 2 s after its death, so ours (0.5 s) is not enough."""
    clock = ManualClock()
    table = LeaseTable(clock)
    zombie = holding(a_dead_instance(), clock, table, 8.0)  # margin 2 s
    assert table.margins["w1"] == 2000 and liveness.dead(zombie.instance)
    successor = a_successor(clock, table, lambda _call: passing(clock))  # margin 0.5 s
    successor.claim("a", threading.Event())
    assert table.workers["w1"][0] == successor.instance
    assert clock.t >= 1000.1 + 2.0  # proven dead at 1000.1
