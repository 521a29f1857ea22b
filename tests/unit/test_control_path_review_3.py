"""Adversarial review 3 of the control path (ordered renewals and heartbeats, the keeper
lowering what a stepped clock stored, releases retried): the defects found, each pinned as
a strict expected failure. The real lease keeper over the in-memory state table, whose
conditions are aws/state_*.py's (``_FREE_OR_MINE``: a claim whose stored expiry passed is
free to *any* heartbeat, the order not asked); every request lands within the request
timeout of its send (docs/concepts/guarantees.md, "Timing and clocks")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_runner_outage import CONFIG, NAMES, FakeReplicator, FakeStreams, NoParking

LEASE = 30.0
STEP = 3600.0
REQUEST_TIMEOUT = 5.0  # the default for the 30 s lease (margin 7.5 s)


class DroppedHeartbeat(MemoryStateStore):
    """Once ``armed``: the next heartbeat's connection drops (the client sees
    UnreachableError) while the table still holds the request; ``on_drop`` runs then (a
    test moves the clock there). ``land`` applies it as sent."""

    def __init__(self, table: LeaseTable, clock: ManualClock) -> None:
        super().__init__(table)
        self.clock = clock
        self.armed = False
        self.on_drop: Callable[[], None] = lambda: None
        self.held_back: tuple[str, int, Mapping[str, Any] | None, dict[str, Any]] | None = None
        self.sent_at = 0.0  # on the monotonic reading (a stepped wall clock says nothing)
        self.steady = 0.0  # real seconds gone by since the test began

    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.armed:
            self.armed = False
            self.held_back = (worker, expires_ms, unreachable, kwargs)
            self.sent_at = self.steady
            self.on_drop()
            raise UnreachableError("connection dropped", region="a")
        super().heartbeat(worker, expires_ms, unreachable, **kwargs)

    def land(self) -> None:
        assert self.held_back is not None
        worker, expires, unreachable, rest = self.held_back
        self.held_back = None
        assert self.steady < self.sent_at + REQUEST_TIMEOUT  # within the assumptions
        MemoryStateStore.heartbeat(self, worker, expires, unreachable, **rest)


def test_a_heartbeat_from_a_clock_ahead_landing_after_its_retry_does_not_pin_the_worker_id() -> (
    None
):
    """Interleaving: w1 (no shard leased: more workers than shards) renews its claim with
    the wall clock an hour ahead; the heartbeat's connection drops and NTP steps the clock
    back before the same-tick retry (``RETRY``), which lowers the claim to a lease from
    now. The first attempt then lands (0.1 s after its send): the stored expiry (now + 30 s)
    is below the first attempt's ``now`` (an hour ahead), so the claim reads as *expired*
    and the heartbeat is applied whatever its order: the claim is an hour ahead again. The
    process dies right after this tick; the docs promise its worker id free a lease after
    its last tick, not after the whole step."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    store = DroppedHeartbeat(table, clock)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    clock.t += STEP  # an hour ahead
    keeper.renew_all()
    assert table.workers["w1"][1] == ms(1000.0 + STEP + LEASE)
    clock.t += 5.0  # the next tick, still ahead

    def stepped_back() -> None:
        clock.t = 1010.0  # NTP brings the wall clock back between the attempt and its retry
        store.steady += 0.05

    store.on_drop = stepped_back
    store.armed = True
    keeper.renew_all()  # first attempt dropped (still on its way), the retry applied
    assert table.workers["w1"][1] == ms(1010.0 + LEASE), "the retry lowered the claim"
    store.steady += 0.05
    store.land()  # 0.1 s after its send
    # The state this test is about: both attempts landed, the retry first.
    assert store.held_back is None and keeper.claims["a"] <= 1010.0 + LEASE
    # w1 dies now. A lease after its last tick a process of w1 on another machine starts.
    clock.t = 1010.0 + LEASE + 0.001
    other = MemoryStateStore(table)
    try:
        other.heartbeat(
            "w1", ms(clock.t + LEASE), instance="elsewhere", now_ms=ms(clock.t), order=1
        )
    except WorkerIdInUseError as held:
        pytest.fail(f"the worker id is pinned {held.expires_ms / 1000 - clock.t:.0f} s ahead")
    assert table.workers["w1"][0] == "elsewhere"


def test_a_heartbeat_landing_after_a_clean_stop_removed_the_claim_does_not_bring_it_back() -> None:
    """Interleaving: the last tick's heartbeat loses its connection (still on its way), its
    same-tick retry is answered; the runner stops cleanly: the keeper stops and the claim
    is removed (``forget_worker``, runner.py). The first attempt lands then (0.2 s after its
    send): ``attribute_not_exists(pk)`` makes any heartbeat welcome, so the claim is back
    for a lease. docs/operating/runner.md: a worker "stopped cleanly restarts at once"; a
    restart on another machine (a rescheduled pod) instead meets a live claim and waits up
    to a lease (or, had the heartbeat come from a clock an hour ahead, an hour)."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    store = DroppedHeartbeat(table, clock)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    clock.t = 1005.0
    store.armed = True
    keeper.renew_all()  # first attempt dropped (still on its way), the retry applied
    keeper.stop()
    store.forget_worker("w1", instance="p", order=keeper.order_after_sent())
    # The state this test is about: the stopped runner gave its claim back (released).
    assert table.workers["w1"] == ("p", 0)
    assert table.workers["w1"][1] < ms(clock.t), "no live claim"
    store.steady += 0.2
    store.land()
    clock.t = 1005.5  # the restart, elsewhere
    other = MemoryStateStore(table)
    try:
        other.heartbeat(
            "w1", ms(clock.t + LEASE), instance="elsewhere", now_ms=ms(clock.t), order=1
        )
    except WorkerIdInUseError as held:
        pytest.fail(f"a cleanly stopped worker id is held {held.expires_ms / 1000 - clock.t:.0f} s")
    assert table.workers["w1"][0] == "elsewhere"


class ThrottledReleases(MemoryStateStore):
    """A region that answers every release throttled (once ``throttling``), the rest as
    usual."""

    throttling = False

    def release(self, shard: ShardRef, owner: str) -> None:
        if self.throttling:
            raise ThrottledError("UpdateItem: ThrottlingException", region="b")
        super().release(shard, owner)


def test_a_shutdown_whose_releases_were_throttled_keeps_the_claim_while_the_leases_live() -> None:
    """Interleaving: the runner stops while region b answers its releases throttled (the
    quick retries all throttled: "lease not released", held.py). The leases stay live in
    b's table until 1030, but ``shutdown`` removes the claim there anyway: it keeps the
    claim only for a lease *left to expire* (``keeper.leaving``), not for one whose release
    failed (``_gone``). The Guarantees: "A lease never outlives its worker id's claim as
    stored" (the rule the keeper's ``_lease_top`` keeps while it runs)."""
    clock = ManualClock()
    tables = {n: LeaseTable(clock) for n in NAMES}
    stores = {n: ThrottledReleases(tables[n]) for n in NAMES}
    regions = {
        n: Region(RegionSpec(n), FakeStreams(n), stores[n], FakeReplicator(), NoParking())
        for n in NAMES
    }
    runner = Runner(CONFIG, worker_id="w", clock=clock, connect=lambda s, *_: regions[s.name])
    runner.regions = regions
    runner.balance()
    clock.t = 1005.0
    stores["b"].throttling = True
    runner.shutdown()
    live = {ref: lease.expires_ms for ref, lease in tables["b"].leases.items()}
    live = {ref: expires for ref, expires in live.items() if expires > ms(clock.t)}
    # The state this test is about: b's leases were not released and live on.
    assert live
    claim = tables["b"].workers.get("w", ("", 0))[1]
    assert all(expires <= claim for expires in live.values()), (
        f"leases live until {sorted(live.values())}, the worker's claim until {claim}"
    )
