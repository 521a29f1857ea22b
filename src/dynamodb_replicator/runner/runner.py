"""The standalone replicator: ``dynamodb-replicator run --config FILE``.

One process (or several sharing the work through leases) replicates every configured table
among every configured region. For each source region it discovers the table's streams and
shards, takes leases on a fair share of the shards, and runs one ShardWorker thread per
leased shard; the ShardWorker feeds pages to the same ``Replicator.process`` the Lambda
handler uses.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ReplicatorError, RetryableTargetError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Clock, ConflictLog
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.observe.conflict_log import JsonLinesConflictLog, open_conflict_log
from dynamodb_replicator.observe.contract_log import warn_violations
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.balancer import Balancer, lease_stores
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.held import Held
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.runner.metrics import RunnerMetrics
from dynamodb_replicator.runner.preflight import Checked, Checks, Schemas
from dynamodb_replicator.runner.reachability import Reachability
from dynamodb_replicator.runner.reconfigure import restart_all, take_up
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.reloader import Reloader, reshape
from dynamodb_replicator.runner.replaceable import Replaceable
from dynamodb_replicator.runner.reports import (
    Pair,
    PairTotals,
    ShardReport,
    pair_totals,
)
from dynamodb_replicator.runner.shard_thread import Owned

__all__ = ["Runner"]

log = logging.getLogger(__name__)


Connect = Callable[[RegionSpec, RunnerConfig, threading.Event, ConflictLog | None], Region]


class Runner:
    """Runs until ``stop`` is set; then stops the shard threads and releases its leases."""

    def __init__(
        self,
        config: RunnerConfig,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
        config_path: str | None = None,
        connect: Connect = Region.connect,
        checks: Checks | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # This process's claim on the worker id: a second process with the same id refuses,
        # a successor on this machine can prove it dead (runner/liveness.py).
        self.instance = liveness.this_instance()
        self.clock = clock or SystemClock()
        self.connect = connect
        self.checks = checks or Checks()
        self.regions: dict[str, Region] = {}
        self.reach = Reachability(self.clock)
        self.schemas: dict[str, Schemas] = {}  # of the regions checked so far
        self.stopping = threading.Event()
        self.conflict_log: JsonLinesConflictLog | None = None
        self.reloader = Reloader(config_path, self.clock, self.checks)
        self.keeper = LeaseKeeper(
            self.worker_id,
            self.instance,
            self.clock,
            config.lease_timeout_seconds,
        )
        self.held = Held(self.worker_id, self.clock, self.reach, self.keeper, lambda: self.regions)
        self.keeper.on_late = self.held.wake
        self.owned, self.finished = self.held.owned, self.held.finished
        self.balancer = Balancer(self.held, self.keeper, self.reach, self.clock, self.stopping)
        self.shards = self.balancer.shards
        self.metrics = RunnerMetrics(
            self.reports,
            worker=self.worker_id,
            clock=self.clock,
            parked=lambda: self.balancer.parked,
            reachable=lambda: self.reach.states(spec.name for spec in self.config.regions),
            retries=self.reach.retries,
        )

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Check the configuration against the regions; create state/tombstone tables.

        Raises ConfigError for what needs fixing; unreachable regions are reported and
        checked again in the background (``check_down``) while the others replicate."""
        began = self.clock.elapsed()
        checked = self.checks.all(self.config)
        self.conflict_log = open_conflict_log(self.config.replication.conflict_log)
        self._take(checked)
        was_checked = self.clock.elapsed()
        regions = self._regions(self.config)
        connected = self.clock.elapsed()
        try:
            self._claim_worker_id(regions)
        except ReplicatorError:
            for region in regions.values():
                region.replicator.close()
            if self.conflict_log is not None:
                self.conflict_log.close()
            raise
        self.regions = regions
        log.info(
            "runner started",
            extra={
                "worker": self.worker_id,
                "regions": list(self.regions),
                "unreachable": sorted(checked.unreachable),
                "tables": list(self.config.tables),
                # Where a slow start went: the checks, making the clients, the worker id's
                # claim (a predecessor's claim is waited for until it expires or its
                # process is proven dead and the margin passed).
                "checks_s": round(was_checked - began, 3),
                "clients_s": round(connected - was_checked, 3),
                "claim_s": round(self.clock.elapsed() - connected, 3),
            },
        )

    def _claim_worker_id(self, regions: dict[str, Region]) -> None:
        """Claim this worker id in every reachable region (see ``LeaseKeeper.claim``)."""
        self.keeper.stores = lease_stores(regions)
        for name in regions:
            if self.reach.is_up(name):  # the others: claimed when they answer again
                self.keeper.claim(name, self.stopping)

    def _take(self, checked: Checked) -> None:
        names = {spec.name for spec in self.config.regions}
        self.reach.keep_only(names)
        self.schemas = {n: s for n, s in self.schemas.items() if n in names} | dict(checked.schemas)
        for name in checked.schemas:
            self.reach.reached(name)
        for name, reason in checked.unreachable.items():
            self.reach.failed(name, reason)

    def run(self, stop: threading.Event) -> None:
        """Balance until ``stop`` is set (call ``stop_soon`` from a signal handler to also cut
        retries short), then shut down."""
        if not self.regions:
            self.start()
        interval = max(0.2, min(self.config.lease_timeout_seconds / 3, 5.0))
        self.keeper.start()  # renewals on their own schedule and thread
        try:
            while not stop.is_set():
                began = self.clock.now()
                try:
                    self.reload_if_changed()
                    self.check_down()
                    self.balance()
                except Exception:  # a long-running process logs, and tries again next round
                    log.exception("coordination round failed", extra={"worker": self.worker_id})
                # Rounds start every ``interval``, however long one takes.
                stop.wait(max(0.0, interval - (self.clock.now() - began)))
        finally:
            self.shutdown()

    def _regions(self, config: RunnerConfig) -> dict[str, Region]:
        """Each region's clients; its replicator one a reload can replace (``_grow``)."""
        regions = {
            spec.name: self.connect(spec, config, self.stopping, self.conflict_log)
            for spec in config.regions
        }
        return {
            name: dataclasses.replace(region, replicator=Replaceable(region.replicator))
            for name, region in regions.items()
        }

    def _note_violations(self, table: str, source: str, result: BatchResult) -> None:
        warn_violations(table, result.violations)
        self.metrics.count_violations(table, source, (v.kind.value for v in result.violations))

    def stop_soon(self) -> None:
        """Make waiting retries give up now; the caller also sets the ``run`` event."""
        self.stopping.set()

    def shutdown(self) -> None:
        self.stopping.set()  # writes waiting to retry give up: stop within seconds
        self.publish()
        self.held.drop_all(self.owned, release=True)
        # A restart's kept leases, and the releases due, go back before the ticks end.
        self.held.settle_kept()
        self.keeper.settle_now({name for name in self.regions if self.reach.is_up(name)})
        self.keeper.stop()
        for name, region in self.regions.items():
            try:
                # A lease left to expire, or one whose release failed, keeps the claim: it
                # runs out on its own after them (a lease never outlives the claim).
                keep = self.keeper.leaving(name) or self.keeper.holds_leases(name)
                if self.reach.is_up(name) and not keep:
                    region.state.forget_worker(
                        self.worker_id, instance=self.instance, order=self.keeper.order_after_sent()
                    )
                    # The table now says "given back": a later round must claim again first.
                    self.keeper.forget_claim(name)
            except ReplicatorError as exc:
                log.warning("could not deregister worker", extra={"reason": str(exc)})
            region.replicator.close()
        if self.conflict_log is not None:
            self.conflict_log.close()
        log.info("runner stopped", extra={"worker": self.worker_id})

    def check_down(self) -> None:
        """Check again the unreachable regions whose turn it is (the one Backoff's schedule);
        when one answers, its pairs resume at once."""
        for name in self.reach.due():
            known = {n: s for n, s in self.schemas.items() if n != name}
            try:
                self.schemas[name] = self.checks.region(
                    self.config.region(name), self.config, known
                )
            except RetryableTargetError as exc:
                self.reach.failed(name, str(exc))
                continue
            except ReplicatorError as exc:
                log.error(
                    "region reachable but misconfigured: its pairs keep waiting",
                    extra={"region": name, "reason": str(exc)},
                )
                self.reach.failed(name, str(exc))
                continue
            if self.reach.reached(name):
                for owned in list(self.owned.values()):
                    owned.worker.wake()

    def reload_if_changed(self) -> bool:
        """Pick up an edited config file (runner/reloader.py): a change of regions and
        tables starts and stops only the pairs it concerns (``take_up``); another change
        restarts the shard workers from their checkpoints, the leases kept."""
        changed = self.reloader.changed(self.config)
        if changed is None:
            return False
        replaceable = all(isinstance(r.replicator, Replaceable) for r in self.regions.values())
        change = reshape(self.config, changed[0])
        if replaceable and change is not None:
            take_up(self, *changed, change)
        else:
            restart_all(self, *changed)
        return True

    # -- leases and discovery ----------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def balance(self) -> None:
        """One coordination round (runner/balancer.py); renewals run on the keeper's thread."""
        self.balancer.round(self.config, self.regions, self._own)

    def _own(
        self, name: str, region: Region, ref: ShardRef, parent: ShardRef | None, lease: Lease
    ) -> None:
        self.held.own(
            name,
            region,
            ref,
            parent,
            lease,
            config=self.config,
            on_lag=self.metrics.lag_observer(ref.table, name),
            on_violations=self._note_violations,
        )

    def _drop(self, ref: ShardRef, *, release: bool, keep: bool = False) -> None:
        self.held.drop(ref, release=release, keep=keep)

    def reports(self) -> list[tuple[ShardReport, bool]]:
        """A report of every shard this process worked on; True for those it holds now."""
        reports: list[tuple[ShardReport, bool]] = self.held.reports()
        return reports

    def publish(self, shards: Sequence[Owned] | None = None) -> None:
        """Write the shards' reports to the state tables, where ``status`` reads them."""
        self.held.publish(shards)

    def snapshot(self) -> dict[Pair, PairTotals]:
        """Per (table, source, target) totals since this process started."""
        return pair_totals((report for report, _ in self.reports()), now=self.clock.now())
