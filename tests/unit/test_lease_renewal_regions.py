"""Lease renewals of one region never wait behind another region's: a region whose state
table answers slowly (each request may take up to the request timeout) delays its own
renewals only, so the other regions' shards keep their deadlines and their writes."""

from __future__ import annotations

import threading
import time

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")
B0 = ShardRef("Orders", "arn:b/stream/Orders", "b-0")


def test_a_region_stuck_in_a_renewal_does_not_hold_up_another_regions_renewals() -> None:
    clock = SystemClock()
    stuck, inside, free = threading.Event(), threading.Event(), threading.Event()

    def slow_a(call: str) -> None:
        if stuck.is_set() and call == "heartbeat":
            inside.set()
            free.wait(30)  # a request out for longer than the lease

    keeper = LeaseKeeper("w", "w#1", clock, 0.6)  # a tick of 0.1 s
    keeper.stores = {
        "a": MemoryStateStore(LeaseTable(clock), slow_a),
        "b": MemoryStateStore(LeaseTable(clock)),
    }
    assert keeper.acquire("a", A0) is not None
    b = keeper.acquire("b", B0)
    assert b is not None
    keeper.start()
    try:
        stuck.set()
        assert inside.wait(10)  # a's renewal is out and hangs
        first = b.until
        while time.time() < first + 0.3:  # past b's expiry as it was
            time.sleep(0.01)
        assert not free.is_set() and inside.is_set()  # a still hangs meanwhile
        assert b.until > first  # b was renewed in the meantime
        assert time.time() < b.deadline()  # b's writes may go on
    finally:
        free.set()
        keeper.stop()
