"""Adversarial review of the dropped-lease settling and the monotonic fence (merge 5c5b64c).

Each test is an interleaving that breaks a guarantee of docs/concepts/guarantees.md
("Timing and clocks"), run on the real keeper over the in-memory state table, a process
clock whose wall reading steps while its monotonic one does not."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import ItemKey, Version
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import deadline_passed
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .test_control_plane_clock_steps import SteppedClock

LEASE = 30.0
STEP = 3600.0
REQUEST = 5.0  # the request timeout for the 30 s lease (margin 7.5 s)
SHARD = ShardRef("T", "arn:a/stream/T", "s-0")
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
HERE, THERE = "eu-west-1", "us-east-1"


@pytest.mark.parametrize("after_reading", range(1, 7))
def test_a_set_back_between_the_fence_and_the_writers_reading_starts_no_late_write(
    after_reading: int,
) -> None:
    """Interleaving (the guarantees' own scenario: a clock run ahead, then set back):
    w1 holds SHARD; its wall clock steps an hour ahead and the tick at t0+10 renews it
    there (stored an hour ahead; ``passes`` t0+40). It drops the shard with its page still
    out: left to expire, to be released once run out by the monotonic clock (t0+40). At
    t0+36 the page asks the writer to put one item: past the monotonic fence (t0+32.5),
    so no write may start. ``StoreWriter._retrying`` reads the fence (``Lease.fence``,
    one wall and one monotonic reading, still an hour ahead) and then, in a second call,
    the wall clock to compare it with; NTP sets it back between the two. The fence's
    monotonic term, computed in the ahead frame, is compared in the right one: stretched
    by the hour, it lets the put start at t0+36 (landing up to t0+41). At t0+40 the tick
    releases the lease and w2 acquires; the put lands after. Fixed: one reading per check
    (``core.ports.deadline_passed`` hands its wall reading to the fence). The set-back
    comes after each of the fence's computations in turn (the writer's check and the
    store's before each request both ask it)."""
    true = ManualClock(1000.0)
    t0 = true.t
    clock = SteppedClock(true, 0.0)
    table = LeaseTable(true)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table)}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    true.t += keeper.tick
    keeper.renew_all()
    clock.offset = STEP
    true.t += keeper.tick
    keeper.renew_all()
    assert table.leases[SHARD].expires_ms == ms(t0 + 10 + STEP + LEASE)  # stored ahead
    keeper.forget(SHARD)
    keeper.leave(SHARD, lease)  # its page still out at the deadline
    while true.t + keeper.tick < t0 + 36:
        true.t += keeper.tick
        keeper.renew_all()
    assert table.leases[SHARD].expires_ms > ms(t0 + STEP)  # not released, not lowered
    true.t = t0 + 36.0
    now = clock.now()
    assert now >= lease.fence(clock, now)  # past the fence: no write may start

    calls: list[str] = []
    checks: list[float] = []

    def fence(now: float) -> float:
        limit = lease.fence(clock, now)
        checks.append(limit)
        if len(checks) == after_reading:
            clock.offset = 0.0  # NTP sets the wall clock back right after this reading
        return limit

    store = MemoryStore(HERE)
    store.before_call = lambda _store, call: calls.append(call)
    protocol = WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, clock, ".__tombstones", 60)
    writer = StoreWriter(protocol, WriterOptions(max_in_flight=1, backoff=Backoff(attempts=1)))
    image = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5"}}
    try:
        writer.apply("T", [PutVersion(KEY, Version.of("5", THERE), image, "3")], deadline=fence)
    finally:
        writer.close()
    if clock.offset != 0.0:  # no such reading: the writer gave up before it
        assert len(checks) < after_reading
        clock.offset = 0.0
    true.t = t0 + 40.0
    keeper.renew_all()  # run out by the monotonic clock: released
    assert table.leases[SHARD].expires_ms == 0
    assert MemoryStateStore(table, name="w2").acquire(SHARD, "w2", ms(true.t), ms(LEASE))
    # The state is reached: w2 holds the shard within a request of the put's start.
    assert [c for c in calls if "put" in c] == [], "a put started past the fence"


class LeaseWritesTimingOut:
    """A region whose lease renewals and releases time out unsent (once ``on``); the
    claim's heartbeats and the rest answered."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, call: str) -> None:
        if self.on and call in ("renew", "release"):
            raise UnreachableError(f"{call}: connect timeout", region="a", request_sent=False)


def test_a_flapping_clock_does_not_bring_the_claim_below_a_dropped_lease_stored_ahead() -> None:
    """Interleaving (NTP flapping between a bad source and a good one): w1's wall clock
    steps an hour ahead; the tick renews SHARD there (stored an hour ahead). The shard's
    thread crashes and is reaped: dropped without a release (``Held.reap`` passes
    ``release=False`` for a shard not done), its thread ended (``Held.drop`` then says
    so: ``ended``). The region's lease requests time out from then on. The clock is set
    back; the tick's release and lowering time out. The clock steps two hours ahead for
    longer than a lease (no lowering: the stored expiry is nearer than a lease from that
    now), so that ``passes`` and the wall ceiling both go by, and is set back again.
    Before the fix ``_lease_top`` then forgot the lease, the next heartbeat lowered the
    stored claim under the lease the table still held an hour ahead, and nothing ever
    lowered or released that lease: the shard stayed pinned for the hour. Now every
    dropped lease whose thread ended is due for release: kept under the claim until the
    table answers one, and released once the region does. Mutation: ``Holdings.ended``
    not marking ``release_due`` fails it (the claim is lowered under the lease)."""
    true = ManualClock(1000.0)
    clock = SteppedClock(true, 0.0)
    table = LeaseTable(true)
    timing_out = LeaseWritesTimingOut()
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table, timing_out)}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    clock.offset = STEP
    true.t += keeper.tick
    keeper.renew_all()
    stored = table.leases[SHARD].expires_ms
    assert stored == ms(true.t + STEP + LEASE)  # stored an hour ahead
    timing_out.on = True
    keeper.forget(SHARD)  # reaped: dropped, no release ...
    keeper.ended(SHARD, lease)  # ... its thread over (Held.drop)
    clock.offset = 0.0
    true.t += keeper.tick
    keeper.renew_all()  # the release and the lowering time out
    clock.offset = 2 * STEP
    for _ in range(8):  # longer than a lease
        true.t += keeper.tick
        keeper.renew_all()
    clock.offset = 0.0
    for _ in range(2):
        true.t += keeper.tick
        keeper.renew_all()
    # The state this test is about: the clock is right again after going past the lease's
    # ceiling on both readings, the lease still stored an hour ahead under w1's id (live).
    assert table.leases[SHARD].expires_ms == stored > ms(true.t + STEP - 10 * keeper.tick)
    assert table.leases[SHARD].owner == "w1"
    claim = table.workers["w1"][1]
    assert claim >= stored, "the claim was lowered under a live lease of ours"
    assert keeper.holds_leases("a")
    timing_out.on = False
    true.t += keeper.tick
    keeper.renew_all()  # the region answers: the lease goes back, the shard is free
    assert table.leases[SHARD].expires_ms == 0
    assert MemoryStateStore(table, name="w2").acquire(SHARD, "w2", ms(true.t), ms(LEASE))


def test_a_deadline_check_is_not_stretched_by_a_set_back_after_its_reading() -> None:
    """``deadline_passed`` on its own (the writer's and the store's checks each use it): a
    fence computed against the check's reading, an hour ahead, the clock then set back
    before the comparison, must still count as passed: the check compares the fence with
    that same reading, never with a second one. Mutation: reading the clock again for
    the comparison fails it."""
    true = ManualClock(1000.0)
    clock = SteppedClock(true, STEP)
    readings: list[float] = []

    def fence(now: float) -> float:
        limit = now - 1.0  # passed by a second, in the frame it is given
        readings.append(limit)
        clock.offset = 0.0  # NTP sets the wall clock back right after the reading
        return limit

    assert deadline_passed(fence, clock)
    assert readings == [1000.0 + STEP - 1.0]  # reached: computed once, in the ahead frame
