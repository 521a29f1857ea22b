"""Adversarial review of 03a01a7: ``LeaseKeeper._settle_dropped`` now ends a region's
settling (a keeper tick's, or the stop's ``settle_now``) at the first ``UnreachableError``
of a dropped lease's release or lowering, whether its request was sent (a read timeout, a
closed connection: ``request_sent``) or never left. Each test runs the real keeper over an
in-memory state table and a clock whose wall reading steps (docs/concepts/guarantees.md,
"Timing and clocks": once the clock is set back, "the next tick lowers each lease to a
lease from now ... So too the leases of shards it dropped meanwhile")."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_control_plane_clock_steps import SteppedClock

LEASE = 30.0
AHEAD = 3600.0
STUCK = ShardRef("T", "arn:a/stream/T", "s-0")  # dropped first: first in ``_gone``
OTHER = ShardRef("T", "arn:a/stream/T", "s-1")


@pytest.fixture
def table() -> Iterator[LeaseTable]:
    yield LeaseTable(ManualClock(1000.0))


class StuckRelease(MemoryStateStore):
    """Region a's state store: every release of ``STUCK`` times out after it was sent (a
    read timeout: it may still land, here it never does); ``unsent`` makes every request
    fail unsent instead (the region cannot be connected to); ``stuck`` off, STUCK's
    releases are answered."""

    unsent = False
    stuck = True
    sent: list[ShardRef]

    def _check(self, call: str, shard: ShardRef | None) -> None:
        if self.unsent:
            raise UnreachableError(f"{call}: connect timeout", region="a", request_sent=False)
        if self.stuck and call == "release" and shard == STUCK:
            raise UnreachableError("release: read timeout", region="a", request_sent=True)

    def release(self, shard: ShardRef, owner: str) -> None:
        self.sent.append(shard)
        self._check("release", shard)
        super().release(shard, owner)

    def renew(self, shard: ShardRef, *args: object, **kwargs: object) -> bool:
        self._check("renew", shard)
        return super().renew(shard, *args, **kwargs)  # type: ignore[arg-type]


def _dropped_an_hour_ahead(
    table: LeaseTable, *, left: bool = False
) -> tuple[LeaseKeeper, SteppedClock, StuckRelease]:
    """w1 holds STUCK and OTHER in region a; its wall clock runs an hour ahead for a tick
    (both stored an hour ahead), both are dropped (STUCK first; OTHER's thread ended, or,
    with ``left``, its page still out: left to expire), and NTP sets the clock back."""
    true = table.clock
    assert isinstance(true, ManualClock)
    clock = SteppedClock(true, 0.0)
    store = StuckRelease(table, name="w1")
    store.sent = []
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    stuck, other = keeper.acquire("a", STUCK), keeper.acquire("a", OTHER)
    assert stuck is not None and other is not None
    clock.offset = AHEAD
    true.t += keeper.tick
    keeper.renew_all()
    for ref in (STUCK, OTHER):  # the state this test starts from: stored an hour ahead
        assert table.leases[ref].expires_ms > ms(true.t + AHEAD)
    keeper.forget(STUCK)
    keeper.ended(STUCK, stuck)
    keeper.forget(OTHER)
    if left:
        keeper.leave(OTHER, other)
    else:
        keeper.ended(OTHER, other)
    clock.offset = 0.0
    return keeper, clock, store


@pytest.mark.parametrize("left", [False, True], ids=["ended", "left-to-expire"])
def test_a_release_that_keeps_timing_out_does_not_keep_the_regions_other_dropped_leases(
    table: LeaseTable, left: bool
) -> None:
    """STUCK's release read-times out on every tick (sent, ``request_sent``: the region
    answers, this one request does not); it is first in ``_gone``. ``_settle_dropped``
    returns at its ``UnreachableError`` before reaching OTHER, every tick, for good: OTHER,
    stored an hour ahead, is neither released (``ended``) nor lowered to a lease from now
    (``left``: what the clock-step rules need "the next tick"), and the claim is kept
    above it, so a process dying now pins the shard and the worker id for the hour.
    Before 03a01a7 the first tick after the step released (or lowered) it. Liveness
    only: the shard thread's writes are fenced by the monotonic bound. Fix: return only
    on ``request_sent=False`` (the region surely cannot be connected to), or move a lease
    whose settling failed behind the others in ``_gone``."""
    keeper, clock, store = _dropped_an_hour_ahead(table, left=left)
    true = clock.true
    for _ in range(int(LEASE / keeper.tick) * 2):  # two leases of ticks
        true.t += keeper.tick
        keeper.renew_all()
    # The state this test is about: STUCK's release was tried on the ticks, and failed.
    assert store.sent.count(STUCK) >= 4 and table.leases[STUCK].owner == "w1"
    top = ms(true.t + 2 * LEASE)
    assert table.leases[OTHER].expires_ms <= top, "OTHER still stored an hour ahead"


def test_a_stop_whose_first_release_times_out_still_hands_back_the_regions_other_leases(
    table: LeaseTable,
) -> None:
    """docs/operating/runner.md: at the stop "a region that answers none of them keeps
    its other leases until they expire". Here the region answers (it would answer
    OTHER's release); only STUCK's times out after it was sent. ``settle_now`` returns
    at it, so OTHER, stored an hour ahead, is not handed back: the shard (and the claim
    kept above it) stay pinned for the hour after a clean stop."""
    keeper, clock, store = _dropped_an_hour_ahead(table)
    keeper.settle_now({"a"})
    # The state this test is about: the stop's settling met STUCK's timeout.
    assert STUCK in store.sent and table.leases[STUCK].owner == "w1"
    assert table.leases[OTHER].expires_ms <= ms(clock.now()), "OTHER not handed back"


def test_a_region_that_cannot_be_connected_to_gets_its_dropped_leases_back_once_it_answers(
    table: LeaseTable,
) -> None:
    """Held: a region that cannot be connected to (every request fails unsent) ends each
    tick's settling at the first lease, but nothing is pinned for good: the leases stay
    due (claim kept above them), and once the region answers (STUCK's release too), the
    next tick releases every one of them, also those behind the first."""
    keeper, clock, store = _dropped_an_hour_ahead(table)
    true = clock.true
    store.unsent = True
    for _ in range(4):
        true.t += keeper.tick
        keeper.renew_all()
    # The state this test is about: nothing went back while the region was unreachable,
    # each tick tried the first lease only (two requests), and the claim stayed above.
    assert table.leases[OTHER].owner == "w1" and table.leases[OTHER].expires_ms > 0
    assert store.sent == [STUCK] * 8 and keeper.holds_leases("a")
    store.unsent = store.stuck = False
    true.t += keeper.tick
    keeper.renew_all()
    assert table.leases[OTHER].expires_ms == 0, "OTHER not released once a answered"


def test_a_timed_out_release_is_never_followed_by_a_release_of_a_lease_whose_thread_may_write(
    table: LeaseTable,
) -> None:
    """Held: OTHER is left to expire (its page still out); STUCK's release times out on
    each tick; once the region answers STUCK, OTHER is lowered (not released) while its
    thread may still write, and released only once it has run out."""
    keeper, clock, store = _dropped_an_hour_ahead(table, left=True)
    true = clock.true
    true.t += keeper.tick
    keeper.renew_all()
    assert OTHER not in store.sent
    store.stuck = False
    true.t += keeper.tick
    keeper.renew_all()
    assert keeper._still_left(OTHER)  # the state: its thread may still write
    assert OTHER not in store.sent and table.leases[STUCK].expires_ms == 0
    assert table.leases[OTHER].expires_ms <= ms(true.t + 2 * LEASE)  # lowered
    while keeper._still_left(OTHER):
        assert OTHER not in store.sent
        true.t += keeper.tick
        keeper.renew_all()
    true.t += keeper.tick
    keeper.renew_all()
    assert table.leases[OTHER].expires_ms == 0
