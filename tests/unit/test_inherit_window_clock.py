"""The window in which a worker that took over a dead process's claim may take that
process's leases at once ends a lease less the margin after its claim was written, on the
monotonic reading as well as on the wall clock: a wall clock stepped back (NTP) does not
stretch it past the time the other processes see the claim run out."""

from __future__ import annotations

import threading

from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_control_review import SteppingClock
from .test_dead_claim_takeover import a_dead_instance

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")
A1 = ShardRef("Orders", "arn:a/stream/Orders", "a-1")


def took_over(clock: SteppingClock) -> tuple[LeaseTable, LeaseKeeper]:
    """A successor that took over the claim of a dead process holding A0 and A1 until 1002
    (lease 2 s, margin 0.5 s: the window ends 1.5 s after the claim was sent, before now)."""
    table = LeaseTable(clock)
    dead = LeaseKeeper("w1", a_dead_instance(), clock, 2.0)
    dead.stores = {"a": MemoryStateStore(table)}
    assert dead.acquire("a", A0) is not None and dead.acquire("a", A1) is not None

    def passing(_call: str) -> None:
        clock.t = round(clock.t + 0.1, 3)  # each request takes 0.1 s, on both clocks

    successor = LeaseKeeper("w1", liveness.this_instance(), clock, 2.0)
    successor.stores = {"a": MemoryStateStore(table, passing)}
    successor.claim("a", threading.Event())
    assert table.workers["w1"][0] == successor.instance  # taken over
    return table, successor


def test_a_wall_clock_stepped_back_does_not_stretch_the_window() -> None:
    clock = SteppingClock()
    table, successor = took_over(clock)
    taken = clock.elapsed()
    assert successor.inheriting("a")
    assert successor.acquire("a", A0) is not None  # in the window: taken at once
    clock.t -= 10.0  # the wall clock steps back (NTP); no time passes
    clock.stepped -= 10.0
    clock.t += 1.5  # past the window on the monotonic reading
    assert clock.elapsed() >= taken + 1.5 and clock.now() < 1002.0
    # The state this test is about: the dead one's other lease is still live by the
    # stepped wall clock, and the window is over.
    assert table.leases[A1].expires_ms > clock.now() * 1000
    assert not successor.inheriting("a")
    assert successor.acquire("a", A1) is None  # waits for the lease to expire


def test_a_wall_clock_stepped_forward_ends_the_window_too() -> None:
    clock = SteppingClock()
    _table, successor = took_over(clock)
    taken = clock.elapsed()
    assert successor.inheriting("a")
    clock.t += 5.0  # the wall clock steps forward; no time passes
    clock.stepped += 5.0
    assert clock.elapsed() == taken
    assert not successor.inheriting("a")
