"""The lease keeper's renewal tick while a reload (or a coordination round) changes the
regions it renews in: a region taken out of the stores meanwhile must not cost the other
regions their renewal, and one given another store meanwhile is renewed (and claimed)
through that store only. The real LeaseKeeper over in-memory state tables."""

from __future__ import annotations

import contextlib

from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore


def test_a_region_taken_out_of_the_stores_mid_tick_does_not_stop_the_others_renewals() -> None:
    clock = ManualClock()
    keeper = LeaseKeeper("w", "w#1", clock, 30.0)

    def reload_meanwhile(call: str) -> None:
        if call == "heartbeat" and "b" in keeper.stores:
            keeper.stores = {n: s for n, s in keeper.stores.items() if n != "b"}  # b removed

    keeper.stores = {
        "a": MemoryStateStore(LeaseTable(clock), reload_meanwhile),
        "b": MemoryStateStore(LeaseTable(clock)),
        "c": MemoryStateStore(LeaseTable(clock)),
    }
    c0 = ShardRef("Orders", "arn:c/stream/Orders", "c-0")
    lease = keeper.acquire("c", c0)  # (claims the id in c only: b is still in the stores)
    assert lease is not None and lease.until == 1030.0 and "b" in keeper.stores
    clock.t += keeper.tick
    with contextlib.suppress(KeyError):  # the renewal thread logs it, and waits a tick
        keeper.renew_all()
    assert "b" not in keeper.stores  # the reload happened during the tick
    assert lease.until == clock.t + 30.0  # c's lease renewed in this tick all the same


def test_a_lease_taken_through_a_new_store_mid_tick_is_not_renewed_through_the_old() -> None:
    """A reload gives c another store during a long tick, and c-0 and c-1 are leased there
    (c-1 claims the id again: the claim ran low). The tick's snapshot holds c's old store,
    where the leases are not: renewing c-0 there would find it lost and drop the shard, and
    its answer must not count as the claim in c. c-0 is renewed at the next tick instead."""
    clock = ManualClock()
    keeper = LeaseKeeper("w", "w#1", clock, 30.0)
    c0, c1 = (ShardRef("Orders", "arn:c/stream/Orders", f"c-{n}") for n in range(2))
    moved = MemoryStateStore(LeaseTable(clock))
    taken: list[Lease | None] = []

    def reload_meanwhile(call: str) -> None:
        if call == "heartbeat" and not taken:
            keeper.stores = {**keeper.stores, "c": moved}  # c's endpoint changed
            keeper.forget_claim("c")
            taken.append(keeper.acquire("c", c0))  # the next round leases c-0 there ...
            clock.t += 16  # ... and c-1 later, the claim running low
            taken.append(keeper.acquire("c", c1))
            clock.t += 1  # the tick goes on

    keeper.stores = {
        "a": MemoryStateStore(LeaseTable(clock), reload_meanwhile),
        "c": MemoryStateStore(LeaseTable(clock)),
    }
    keeper.heartbeat("c")  # a claim in c's old table
    clock.t += keeper.tick
    keeper.renew_all()
    lease = taken[0]
    assert lease is not None and taken[1] is not None  # the reload happened mid-tick
    assert keeper.stores["c"] is moved and lease.until == 1035.0 and clock.t == 1022.0
    assert not keeper.lost(c0) and lease.until == 1035.0  # not renewed (nor lost) there
    assert keeper.claims["c"] == moved.table.workers["w"][1] / 1000 == 1051.0
    clock.t += keeper.tick
    keeper.renew_all()
    assert lease.until == clock.t + 30.0  # renewed through the new store
