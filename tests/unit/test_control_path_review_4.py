"""Adversarial review 4 of the whole control path (issue #23): the defects found, each
pinned as a strict expected failure. The real lease keeper (and Runner where it matters)
over the in-memory state table (testing/memory_leases.py, the conditions of
aws/state_*.py) and a ManualClock; every request lands within the request timeout of its
send (docs/concepts/guarantees.md, "Timing and clocks")."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.errors import ThrottledError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

LEASE = 30.0
STEP = 3600.0  # the wall clock an hour ahead, then set back (NTP)
SHARD = ShardRef("T", "arn:a/stream/T", "s-0")


class ThrottledReleases(MemoryStateStore):
    """A region that answers every release throttled once ``throttling`` (the rest as usual)."""

    throttling = False

    def release(self, shard: ShardRef, owner: str) -> None:
        if self.throttling:
            raise ThrottledError("UpdateItem: ThrottlingException", region="a")
        super().release(shard, owner)


def _ahead_then_set_back(*, left: bool) -> tuple[ManualClock, LeaseTable, LeaseKeeper]:
    """w1 holds SHARD with its wall clock an hour ahead; the shard is dropped (a balancing
    hand-over, a reload) with its lease stored an hour ahead: ``left`` - its page is still
    out at the deadline, so the lease is left to expire (held.py: ``forget`` then
    ``leave``); else its release is throttled on every quick retry ("lease not released",
    ``_gone``). NTP then sets the clock back, and the keeper ticks on for two ticks."""
    clock = ManualClock(1000.0 + STEP)
    table = LeaseTable(clock)
    store = ThrottledReleases(table)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    clock.t += keeper.tick
    keeper.renew_all()
    keeper.forget(SHARD)
    if left:
        keeper.leave(SHARD, lease)
    else:
        store.throttling = True
        with pytest.raises(ThrottledError):
            keeper.release(SHARD, "a")
    # The state these tests are about: the table holds the lease an hour ahead.
    assert table.leases[SHARD].expires_ms > ms(1000.0 + STEP)
    clock.t = 1010.0  # set back
    for _ in range(3):  # the two ticks the docs give, and one more
        keeper.renew_all()
        clock.t += keeper.tick
    return clock, table, keeper


@pytest.mark.parametrize("left", [True, False], ids=["left_to_expire", "release_throttled"])
@pytest.mark.xfail(
    strict=True,
    reason="a dropped lease stored under a clock ahead is never lowered: it and the claim "
    "stay pinned for the whole step",
)
def test_a_dropped_lease_stored_under_a_clock_ahead_is_free_a_lease_after_the_clock_came_back(
    left: bool,
) -> None:
    """Interleaving: w1's wall clock runs an hour ahead; it renews SHARD's lease (stored
    an hour ahead), then drops the shard: its page outlived the deadline (left to expire)
    or its release was throttled four times. NTP sets the clock back; the keeper ticks
    twice more and w1 dies. The guarantees (Timing and clocks): once the clock is set back
    "what it stored that far ahead comes down ... A process that dies after that frees its
    shards, and its worker id, a lease after its last tick, not after the whole step". The
    keeper lowers only the leases it still renews (``_renew_region`` walks ``leases``); a
    dropped one is no longer renewed, so it stays an hour ahead, and the claim with it
    (never below a lease the table may hold): nobody takes the shard, nor the worker id,
    for an hour. w1 itself would not take it again either (``_still_left`` on its own
    stepped clock)."""
    clock, table, _keeper = _ahead_then_set_back(left=left)
    last_tick = clock.t
    clock.t = last_tick + LEASE + 0.001  # w1 died at its last tick; a lease later
    other = MemoryStateStore(table, name="w2")
    taken = other.acquire(SHARD, "w2", ms(clock.t), ms(LEASE))
    pinned = table.leases[SHARD].expires_ms / 1000 - clock.t
    assert taken, f"the shard is pinned {pinned:.0f} s after its holder died"
    try:
        other.heartbeat(
            "w1", ms(clock.t + LEASE), instance="elsewhere", now_ms=ms(clock.t), order=1
        )
    except WorkerIdInUseError as held:
        pytest.fail(f"the worker id is pinned {held.expires_ms / 1000 - clock.t:.0f} s")
