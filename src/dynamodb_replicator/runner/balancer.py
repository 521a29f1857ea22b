"""Sharing the shards among the workers: discovery, a fair share of the readable shards,
handing shards over when a worker joins, counting parked records for the metrics."""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

from dynamodb_replicator.core.errors import ReplicatorError, UnreachableError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import call_with_retries
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.held import Held
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.runner.reachability import TRANSIENT, Reachability
from dynamodb_replicator.runner.regions import Coordination, Region

__all__ = ["Balancer", "lease_stores"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Own = Callable[[str, Region, ShardRef, ShardRef | None, Lease], None]
Regions = Mapping[str, Region]


def lease_stores(regions: Regions) -> dict[str, Coordination]:
    """Each region's store for the lease keeper: its own client where it has one."""
    return {name: region.leases or region.state for name, region in regions.items()}


class Balancer:
    """One coordination round at a time (``round``), on the runner's thread."""

    def __init__(
        self,
        held: Held,
        keeper: LeaseKeeper,
        reach: Reachability,
        clock: Clock,
        stopping: threading.Event | None = None,
    ) -> None:
        self.held, self.keeper, self.reach, self.clock = held, keeper, reach, clock
        self.stopping = stopping  # set on shutdown: a request that failed is not tried again
        # The shards each region's last successful discovery found: a failed discovery
        # does not shrink the set the fair share is taken of.
        self.shards: dict[str, dict[ShardRef, ShardRef | None]] = {}
        # Parked records per (table, source), read from the state tables each round.
        self.parked: dict[tuple[str, str], int] = {}

    def _up(self, regions: Regions) -> dict[str, Region]:
        return {name: r for name, r in regions.items() if self.reach.is_up(name)}

    def round(self, config: RunnerConfig, regions: Regions, own: Own) -> None:
        """Discovery, then hold a fair share of the shards that can be read (those of the
        regions that answer); then reports and parked counts."""
        self.keeper.unreachable = {n: (d.since, d.reason) for n, d in self.reach.down().items()}
        self.keeper.stores = lease_stores(self._up(regions))
        for ref, owned in list(self.held.owned.items()):
            if owned.lease.until == 0.0:  # the keeper found it lost
                self.held.drop(ref, release=False)
        readable: dict[ShardRef, tuple[str, ShardRef | None]] = {}
        workers = [1]
        for name, region in self._up(regions).items():
            look = functools.partial(self._look, config, name, region, workers)
            self._attempt(name, look)
            if self.reach.is_up(name):  # a failed discovery keeps the shards found before
                for ref, parent in self.shards.get(name, {}).items():
                    if ref not in self.held.finished:
                        readable[ref] = (name, parent)
        self.held.reap()
        self._share(regions, readable, math.ceil(len(readable) / max(workers)), own)
        self.held.settle_kept()  # a restart's leases not taken again: handed back
        self.held.publish()
        self._count_parked(config, regions)

    def _attempt(self, name: str, action: Callable[[], None]) -> None:
        """Run ``action`` (its requests retried by ``_retried``); only a region that still
        cannot be connected to after the retries is marked down (so not while stopping,
        when they are cut short). One that answers busy keeps its pairs going and the
        shards found before (a failed discovery shrinks nothing)."""
        try:
            action()
        except UnreachableError as exc:
            if self.stopping is not None and self.stopping.is_set():
                # Tried once (retries stop at once now): no proof of an outage, and the
                # shutdown is still to release the region's leases (it retries those).
                log.info(
                    "region not reached while stopping (not marked unreachable)",
                    extra={"region": name, "reason": str(exc)},
                )
                return
            self.reach.failed(name, str(exc))  # checked again by check_down
        except ReplicatorError as exc:
            log.warning(
                "region unavailable for coordination (it answers: not marked unreachable)",
                extra={"region": name, "reason": str(exc)},
            )

    def _retried(self, name: str, call: Callable[[], T]) -> T:
        """``call`` with the quick retries of ``TRANSIENT``, each counted for ``name``; none
        once the runner is stopping (a region that times out would hold the stop for up to
        four request timeouts)."""
        return call_with_retries(
            call,
            TRANSIENT,
            on_retry=lambda _exc, _attempt: self.reach.retried(name),
            stop=self.stopping,
            clock=self.clock,
        )

    def _look(self, config: RunnerConfig, name: str, region: Region, workers: list[int]) -> None:
        self.shards[name] = self._discover(config, name, region)
        now_ms = int(self.clock.now() * 1000)
        workers.append(len(self._retried(name, lambda: region.state.live_workers(now_ms))))

    def _share(
        self,
        regions: Regions,
        readable: Mapping[ShardRef, tuple[str, ShardRef | None]],
        share: int,
        own: Own,
    ) -> None:
        # Shards held in regions that cannot be read now are kept, and not counted.
        owned = self.held.owned
        held = [ref for ref, o in owned.items() if self.reach.is_up(o.region)]
        for ref, (name, parent) in readable.items():
            if len(held) >= share:
                break
            if ref in owned:
                continue
            try:
                lease = self.keeper.acquire(name, ref)
            except ReplicatorError as exc:
                log.warning("lease not acquired", extra={"shard": str(ref), "reason": str(exc)})
                continue
            if lease is not None:
                own(name, regions[name], ref, parent, lease)
                held.append(ref)
        while len(held) > share:  # another worker joined: hand shards over
            self.held.drop(held.pop(), release=True)

    def _discover(
        self, config: RunnerConfig, name: str, region: Region
    ) -> dict[ShardRef, ShardRef | None]:
        """Unfinished shards of every table's streams in the region -> their parent shard."""
        found: dict[ShardRef, ShardRef | None] = {}
        for table in config.tables:
            for arn in self._retried(name, functools.partial(region.streams.stream_arns, table)):
                shards = self._retried(name, functools.partial(region.streams.shards, arn))
                ids = {shard.shard_id for shard in shards}
                for shard in shards:
                    ref = ShardRef(table, arn, shard.shard_id)
                    if ref in self.held.finished:
                        continue
                    parent = shard.parent_id if shard.parent_id in ids else None
                    found[ref] = ShardRef(table, arn, parent) if parent else None
        return found

    def _count_parked(self, config: RunnerConfig, regions: Regions) -> None:
        counts = {(t, name): 0 for t in config.tables for name in regions}
        for name, region in self._up(regions).items():
            try:
                for parked in region.parking.parked(config.tables):
                    key = (parked.table, name)
                    counts[key] = counts.get(key, 0) + 1
            except ReplicatorError as exc:
                log.warning(
                    "parked records not counted", extra={"region": name, "reason": str(exc)}
                )
        self.parked = counts
