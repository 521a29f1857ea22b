"""Adversarial review of the dropped-lease settling and the monotonic fence (merge 5c5b64c).

Each test is an interleaving that breaks a guarantee of docs/concepts/guarantees.md
("Timing and clocks"), run on the real keeper over the in-memory state table, a process
clock whose wall reading steps while its monotonic one does not."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.core.errors import ThrottledError
from dynamodb_replicator.core.model import ItemKey, Version
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
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


class Throttling:
    """A region whose renewals are answered throttled (once ``on``): nothing lands."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, call: str) -> None:
        if self.on and call == "renew":
            raise ThrottledError("UpdateItem: ThrottlingException", region="a")


@pytest.mark.xfail(strict=True, reason="fence's monotonic term is the max over renewals SENT")
def test_renewals_refused_then_a_step_back_do_not_let_writes_outlive_the_stored_lease() -> None:
    """Interleaving: w1 holds SHARD (clocks right) and renews it once at t0+5 (stored
    till t0+35). Its next renewals (t0+10..20) are answered throttled: none lands, the
    table keeps t0+35, yet each raises ``passes`` (``may_store`` counts renewals *sent*).
    NTP sets w1's wall clock back an hour; the tick at t0+25 lowers ``until`` to a lease
    from its (stepped) now, t0+55 in true time, and sends that: throttled too. Now the
    wall term of ``Lease.fence`` is useless and the monotonic one (``passes``, t0+55) is
    no better: at t0+36 w2 acquires the shard, and w1's page may still start writes until
    t0+47.5 (landing up to t0+52.5). Fix: fence on what the table surely holds, the
    monotonic expiry of the last renewal *answered* (lowered, never raised, by one sent),
    and keep ``passes`` for the upper bound (claims, ``_running``)."""
    true = ManualClock(1000.0)
    t0 = true.t
    clock = SteppedClock(true, 0.0)
    table = LeaseTable(true)
    throttling = Throttling()
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table, throttling)}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    true.t += keeper.tick
    keeper.renew_all()
    stored = table.leases[SHARD].expires_ms / 1000
    assert stored == t0 + keeper.tick + LEASE  # t0 + 35: renewed once
    throttling.on = True
    for _ in range(3):  # throttled for three ticks: the wall deadline still holds the page
        true.t += keeper.tick
        keeper.renew_all()
        assert clock.now() < lease.fence(clock) <= stored - lease.margin
    clock.offset = -STEP  # NTP sets w1's wall clock back an hour
    true.t += keeper.tick
    keeper.renew_all()  # t0+25: a lowering, throttled too
    true.t = stored + 1.0
    # The state this test is about: nothing landed since t0+5, the table's lease has run
    # out (w2 takes it at t0+36), and w1's page would start a write now.
    assert table.leases[SHARD].expires_ms / 1000 == stored
    assert MemoryStateStore(table, name="w2").acquire(SHARD, "w2", ms(true.t), ms(LEASE))
    assert clock.now() >= lease.fence(clock), "w1's page still starts writes after w2 acquired"


@pytest.mark.xfail(strict=True, reason="the writer compares the fence with a second reading")
def test_a_step_back_between_the_fence_and_the_writers_reading_starts_no_late_write() -> None:
    """Interleaving: w1 acquired SHARD at t0 (clocks right), no renewal since; at t0+29
    (the deadline t0+22.5 passed on both readings, the table's lease runs out at t0+30)
    its page asks the writer to put one item (the prefetch read is refused in time).
    ``StoreWriter._retrying`` reads the fence (``Lease.fence``: one wall reading, one
    monotonic) and then, in a second call, the wall clock to compare it with. NTP sets
    the wall clock back an hour between the two readings: the fence computed on the
    first is compared with the second, an hour earlier, and the put starts, landing up
    to t0+34, after w2 may have acquired. The monotonic term exists for exactly this
    step. Fix: one reading per check (the Deadline port answers "may a write start now"
    or the seconds left from one reading, or the writer hands its reading to the fence).
    """
    true = ManualClock(1000.0)
    t0 = true.t
    clock = SteppedClock(true, 0.0)
    table = LeaseTable(true)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table)}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    true.t = t0 + 29.0
    assert clock.now() >= lease.fence(clock)  # no write may start: the state reached

    calls: list[str] = []
    checks: list[float] = []

    def fence() -> float:
        limit = lease.fence(clock)
        checks.append(limit)
        if len(checks) == 2:  # the put's check (the first: the prefetch read's, refused)
            clock.offset = -STEP  # NTP steps the wall clock back right after this reading
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
    assert table.leases[SHARD].expires_ms == ms(t0 + LEASE)  # runs out a second later
    assert len(checks) >= 2 and clock.offset == -STEP  # the step came between the readings
    assert [c for c in calls if "put" in c] == [], "a put started past the fence"
