"""Dropped leases (left to expire, or whose release failed) and a wall clock that steps.

After a step back, the keeper's ticks bring a dropped lease stored further ahead than a
lease from now down to that, in order and with its token, and retry a failed release
(runner/leases.py, ``_settle_dropped``): the claim comes down with them. A lease left to
expire keeps its fence throughout: its thread's deadline is lowered before the lowering
is sent, so the table never holds less than the page's writes need (deadline + margin),
and its process does not take the shard again while the page's writes may still land,
whichever way its wall clock stepped (``_still_left``, on the monotonic reading too).
The real keeper over the in-memory state table; a clock whose wall reading steps while its
monotonic one does not (the control-plane simulation's)."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.core.errors import ThrottledError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.holdings import Lease
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_control_path_review_3 import ThrottledReleases
from .test_control_plane_clock_steps import SteppedClock

LEASE = 30.0
STEP = 3600.0
REQUEST = 5.0  # the request timeout for the 30 s lease (margin 7.5 s)
SHARD = ShardRef("T", "arn:a/stream/T", "s-0")


def _holding() -> tuple[ManualClock, SteppedClock, LeaseTable, LeaseKeeper, Lease]:
    """w1 holds SHARD in region a, its wall clock right (a ``SteppedClock`` over the true
    time, offset 0): the true clock, w1's, the table, w1's keeper and the lease."""
    true = ManualClock(1000.0)
    clock = SteppedClock(true, 0.0)
    table = LeaseTable(true)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table)}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    return true, clock, table, keeper, lease


def _dropped_ahead(
    *, left: bool
) -> tuple[ManualClock, SteppedClock, LeaseTable, ThrottledReleases, LeaseKeeper, Lease]:
    """w1's wall clock an hour ahead; it holds SHARD, renews it (stored an hour ahead) and
    drops it: left to expire (its page still out) or its release throttled."""
    true = ManualClock(1000.0)
    clock = SteppedClock(true, STEP)
    table = LeaseTable(true)
    store = ThrottledReleases(table)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    true.t += keeper.tick
    keeper.renew_all()
    keeper.forget(SHARD)
    if left:
        keeper.leave(SHARD, lease)
    else:
        store.throttling = True
        with pytest.raises(ThrottledError):
            keeper.release(SHARD, "a")
    assert table.leases[SHARD].expires_ms > ms(true.t + STEP)  # stored an hour ahead
    return true, clock, table, store, keeper, lease


def test_a_left_lease_lowered_after_a_step_back_keeps_its_page_fenced() -> None:
    """The page still out checks ``lease.deadline()`` before each write, on w1's clock,
    and each write lands within a request of its check. Through the step back and the
    ticks after it, the table holds the lease at least until the deadline + margin w1's
    thread goes by (so every write it starts lands before another worker can acquire),
    never releases it, and w2 cannot acquire before then."""
    true, clock, table, _store, keeper, lease = _dropped_ahead(left=True)
    clock.offset = 0.0  # NTP sets the wall clock back
    stored = []
    for _ in range(3):
        before = table.leases[SHARD]
        keeper.renew_all()
        after = table.leases[SHARD]
        assert after.token == before.token and after.expires_ms > 0, "released, page still out"
        # The latest write the thread may start (at its deadline) lands before this.
        assert after.expires_ms >= ms(lease.deadline() + REQUEST)
        assert after.expires_ms >= ms(lease.until), "the table holds less than the page needs"
        stored.append(after.expires_ms / 1000)
        true.t += keeper.tick
    # The state this test is about: it came down from an hour ahead to a lease from the
    # first tick back, and stayed there.
    back = true.t - 3 * keeper.tick
    assert stored == [back + LEASE] * 3 and lease.until == back + LEASE
    other = MemoryStateStore(table, name="w2")
    assert not other.acquire(SHARD, "w2", ms(lease.until - 0.001), ms(LEASE))
    assert keeper.acquire("a", SHARD) is None, "taken again while its page may write"
    true.t = lease.until + 0.001
    assert other.acquire(SHARD, "w2", ms(true.t), ms(LEASE))


@pytest.mark.parametrize("left", [True, False], ids=["left_to_expire", "release_throttled"])
def test_the_claim_comes_down_with_a_dropped_lease_after_a_step_back(left: bool) -> None:
    true, clock, table, _store, keeper, _lease = _dropped_ahead(left=left)
    assert table.workers["w1"][1] > ms(true.t + STEP)  # the claim an hour ahead too
    clock.offset = 0.0
    for _ in range(2):  # the lease comes down at the first tick, the claim at the second
        keeper.renew_all()
        true.t += keeper.tick
    last = true.t - keeper.tick
    assert table.workers["w1"][1] <= ms(last + LEASE)
    assert keeper.claims["a"] <= last + LEASE
    assert not keeper.holds_leases("a") or table.leases[SHARD].expires_ms <= ms(last + LEASE)


def test_a_failed_release_is_sent_again_at_a_later_tick() -> None:
    true, clock, table, store, keeper, _lease = _dropped_ahead(left=False)
    keeper.renew_all()  # still throttled: kept, and the lease stays ours
    assert table.leases[SHARD].owner == "w1" and keeper.holds_leases("a")
    store.throttling = False
    keeper.renew_all()
    assert table.leases[SHARD].expires_ms == 0, "the release was not sent again"
    assert not keeper.holds_leases("a")
    # Nothing of it is ours any more: the claim comes down at the next tick.
    true.t += keeper.tick
    keeper.renew_all()
    assert table.workers["w1"][1] <= ms(clock.now() + LEASE)


def test_a_left_lease_is_not_taken_again_by_its_process_after_its_clock_stepped_forward() -> None:
    """Interleaving: w1 holds SHARD (wall clock right), drops it with its page still out
    at the deadline (left to expire); NTP steps w1's wall clock an hour forward. By that
    clock the lease expired, but the page's last write may land up to a request after the
    deadline, on the true time: w1 must not start a second thread on the shard until
    then (its token would take the lease again at once). Nor does a tick lower the lease:
    a step forward puts the stored expiry nearer than a lease from now."""
    true, clock, table, keeper, lease = _holding()
    keeper.forget(SHARD)
    true.t = lease.deadline()  # Held.drop waited for the page until the deadline
    keeper.leave(SHARD, lease)
    expires = table.leases[SHARD].expires_ms
    clock.offset = STEP  # stepped forward
    keeper.renew_all()
    # The state this test is about: by w1's own clock the lease ran out long ago.
    assert clock.now() > lease.until and table.leases[SHARD].expires_ms == expires
    true.t = lease.deadline() + REQUEST - 0.001  # a write of the page may still land
    assert keeper.acquire("a", SHARD) is None, "a second writer while the first may write"
    true.t = lease.until + 0.001
    assert keeper.acquire("a", SHARD) is not None


def test_a_dropped_lease_stays_under_the_claim_through_a_clock_stepped_forward_and_back() -> None:
    """Interleaving (found by test_control_plane_dropped_steps.py): w1 drops SHARD (left
    to expire: stored until 1030); its wall clock jumps an hour forward for a tick, past
    that expiry by its own reading, and NTP sets it back two seconds behind the true time.
    The table still holds the lease until 1030; the claim must not come below it (a
    process under the same id would find the claim free while the lease is live)."""
    true, clock, table, keeper, lease = _holding()
    keeper.forget(SHARD)
    keeper.leave(SHARD, lease)
    true.t += 1.0
    clock.offset = STEP
    keeper.renew_all()  # by its reading the lease passed an hour ago
    clock.offset = -2.0  # within the assumptions: less than the margin less a request
    for _ in range(3):
        true.t += 0.1
        keeper.renew_all()
        claim, stored = table.workers["w1"][1], table.leases[SHARD].expires_ms
        # The state this test is about: the lease is still live in the table.
        assert stored > ms(true.t)
        assert claim >= stored, f"the claim until {claim} is below the lease until {stored}"


def test_a_left_lease_run_out_while_the_clock_ran_ahead_is_released_and_its_thread_stopped() -> (
    None
):
    """Interleaving (found by test_control_plane_dropped_steps.py): w1's clock runs an
    hour ahead; it renews SHARD (stored an hour ahead) and drops it, its page still out
    (left to expire). It stays ahead for longer than a lease: by both its readings the
    lease ran out, while the table holds it for the hour. Then NTP sets the clock back.
    The lease must not stay stored above the claim, nor pin the shard for the hour, and
    the left thread must not find its deadline ahead of the wall clock again."""
    true, clock, table, keeper, lease = _holding()
    clock.offset = STEP
    keeper.renew_all()
    keeper.forget(SHARD)
    true.t = lease.deadline() - STEP  # Held.drop waited for the page until the deadline
    keeper.leave(SHARD, lease)
    while true.t < 1000.0 + 2 * LEASE:  # it ticks on, still ahead
        true.t += keeper.tick
        keeper.renew_all()
    # The state this test is about: by both of w1's readings the lease ran out (its
    # wall clock, still ahead, is past the expiry it stored; a lease went by since).
    assert clock.now() > lease.ceiling > true.t + LEASE and true.t > lease.passes
    clock.offset = 0.0
    keeper.renew_all()
    stored, claim = table.leases[SHARD].expires_ms, table.workers["w1"][1]
    assert stored <= claim, "the lease is stored above the claim"
    assert stored <= ms(true.t + LEASE), "the shard is pinned for the step"
    assert lease.deadline() < clock.now(), "the left thread may write again"


def test_a_lease_left_after_a_step_forward_is_not_released_while_its_writes_may_land() -> None:
    """Interleaving (found by test_control_plane_dropped_steps.py, seed 55): w1 holds
    SHARD (until 1030), a write of its page is out; the wall clock jumps an hour forward
    and the shard is dropped: by the wall clock the deadline passed, so ``Held.drop`` does
    not wait and leaves it to expire. The write still lands up to a request later on the
    true time: the lease must be neither released nor taken again by w1 before the
    expiry it was renewed to has passed on the monotonic reading."""
    true, clock, table, keeper, lease = _holding()
    true.t = lease.deadline() - 1.0  # a write starts, lands by deadline - 1 + REQUEST
    clock.offset = STEP
    keeper.forget(SHARD)
    keeper.leave(SHARD, lease)
    # The state this test is about: by w1's wall clock the lease ran out an hour ago.
    assert clock.now() > lease.until
    true.t += 0.1
    keeper.renew_all()
    assert table.leases[SHARD].expires_ms == ms(lease.until), "released, a write still out"
    assert keeper.acquire("a", SHARD) is None, "taken again, a write still out"
    true.t = lease.until + 0.001
    keeper.renew_all()
    assert table.leases[SHARD].expires_ms == 0, "released once run out by both clocks"


def test_a_lease_fences_its_writes_by_the_monotonic_reading_after_a_step_back() -> None:
    """Its thread asks ``Lease.fence`` before each write (held.py): after a step back the
    deadline by the wall clock is an hour off until the keeper lowers it, but no write
    starts later than the margin before the lease runs out on the monotonic reading."""
    true = ManualClock(1000.0)
    clock = SteppedClock(true, 0.0)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(true))}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    clock.offset = -STEP
    # The state this test is about: by the wall clock the deadline is an hour away.
    assert lease.deadline() > clock.now() + STEP
    now = clock.now()
    assert lease.fence(clock, now) == pytest.approx(now + LEASE - lease.margin)
