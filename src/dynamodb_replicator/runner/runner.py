"""The standalone replicator: ``dynamodb-replicator run --config FILE``.

One process (or several sharing the work through leases) replicates every configured table
among every configured region. For each source region it discovers the table's streams and
shards, takes leases on a fair share of the shards, and runs one ShardWorker thread per
leased shard; the ShardWorker feeds pages to the same ``Replicator.process`` the Lambda
handler uses.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.aws.parked import DynamoParkingLot
from dynamodb_replicator.aws.report_items import report_to_item
from dynamodb_replicator.aws.state import DynamoStateStore, WorkerIdInUseError
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Clock, ConflictLog
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import Shard, ShardRef
from dynamodb_replicator.observe.conflict_log import JsonLinesConflictLog, open_conflict_log
from dynamodb_replicator.observe.contract_log import warn_violations
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.metrics import RunnerMetrics
from dynamodb_replicator.runner.preflight import preflight
from dynamodb_replicator.runner.reports import (
    Pair,
    PairTotals,
    ShardReport,
    add_counters,
    pair_totals,
    target_reports,
)
from dynamodb_replicator.runner.shardworker import ShardWorker

__all__ = ["Runner"]

log = logging.getLogger(__name__)


def _stamp(path: str | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


@dataclass(slots=True)
class _Owned:
    worker: ShardWorker
    thread: threading.Thread
    stop: threading.Event
    region: str
    ref: ShardRef


class _Region:
    """Everything the runner holds for one source region."""

    def __init__(
        self,
        spec: RegionSpec,
        config: RunnerConfig,
        stopping: threading.Event,
        conflict_log: ConflictLog | None,
        on_violations: Callable[[str, str, BatchResult], None] | None = None,
    ) -> None:
        self.spec = spec
        self.on_violations = on_violations
        self.streams = StreamClient(
            spec.name, make_client("dynamodb", spec), make_client("dynamodbstreams", spec)
        )
        self.state = DynamoStateStore(
            make_client("dynamodb", spec), config.state_table, spec.name, stop=stopping
        )
        self.replicator: Replicator = build_replicator(
            spec, config.regions, config.replication, stop=stopping, conflict_log=conflict_log
        )
        self.parking = DynamoParkingLot(
            make_client("dynamodb", spec), config.state_table, spec.name
        )

    def process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
    ) -> BatchResult:
        result = self.replicator.process(
            table, records, from_json=False, regions=targets, logged=logged
        )
        if result.violations and self.on_violations is not None:
            self.on_violations(table, self.spec.name, result)
        return result


class Runner:
    """Runs until ``stop`` is set; then stops the shard threads and releases its leases."""

    def __init__(
        self,
        config: RunnerConfig,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._config_stamp = _stamp(config_path)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # This process's claim on the worker id: a second process with the same id refuses.
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        self.clock = clock or SystemClock()
        self.regions: dict[str, _Region] = {}
        self.owned: dict[ShardRef, _Owned] = {}
        self.finished: set[ShardRef] = set()
        # Counters of shards this process no longer holds, summed per (table, source): the
        # metrics' counters never go down, and the memory stays bounded.
        self.retired: dict[tuple[str, str], ShardReport] = {}
        self.lease_ms = int(config.lease_timeout_seconds * 1000)
        self.stopping = threading.Event()
        self.conflict_log: JsonLinesConflictLog | None = None
        # Parked records per (table, source), read from the state tables each round.
        self.parked: dict[tuple[str, str], int] = {}
        self.metrics = RunnerMetrics(
            self.reports, worker=self.worker_id, clock=self.clock, parked=lambda: self.parked
        )

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Check the configuration against the regions; create state/tombstone tables."""
        preflight(self.config)
        self.conflict_log = open_conflict_log(self.config.replication.conflict_log)
        regions = self._regions(self.config)
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
                "tables": list(self.config.tables),
            },
        )

    def _claim_worker_id(self, regions: dict[str, _Region]) -> None:
        """Claim this worker id in every region. A claim another process renews refuses the
        start (the id runs twice); one left to expire (a process that died) is taken over
        when it expires, at most ``lease_timeout_seconds`` later, and its leases with it."""
        for region in regions.values():
            first: WorkerIdInUseError | None = None
            while True:
                now = self._now_ms()
                try:
                    region.state.heartbeat(
                        self.worker_id, now + self.lease_ms, instance=self.instance, now_ms=now
                    )
                    break
                except WorkerIdInUseError as held:
                    if first is None:
                        first = held
                        log.info(
                            "worker id held by another process: waiting to see it renewed "
                            "(refuse) or expire (take over)",
                            extra={"worker": self.worker_id, "region": region.spec.name},
                        )
                    elif (held.holder, held.expires_ms) != (first.holder, first.expires_ms):
                        raise  # renewed meanwhile: the same id runs in another process
                self.stopping.wait(0.2)

    def _interval(self) -> float:
        return max(0.2, min(self.config.lease_timeout_seconds / 3, 5.0))

    def run(self, stop: threading.Event) -> None:
        """Balance until ``stop`` is set (call ``stop_soon`` from a signal handler to also cut
        retries short), then shut down."""
        if not self.regions:
            self.start()
        interval = self._interval()
        try:
            while not stop.is_set():
                try:
                    self.reload_if_changed()
                    self.balance()
                except Exception:  # a long-running process logs, and tries again next round
                    log.exception("coordination round failed", extra={"worker": self.worker_id})
                stop.wait(interval)
        finally:
            self.shutdown()

    def _regions(self, config: RunnerConfig) -> dict[str, _Region]:
        return {
            spec.name: _Region(
                spec, config, self.stopping, self.conflict_log, self._note_violations
            )
            for spec in config.regions
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
        for ref in list(self.owned):
            self._drop(ref, release=True)
        for region in self.regions.values():
            try:
                region.state.forget_worker(self.worker_id, instance=self.instance)
            except ReplicatorError as exc:
                log.warning("could not deregister worker", extra={"reason": str(exc)})
            region.replicator.close()
        if self.conflict_log is not None:
            self.conflict_log.close()
        log.info("runner stopped", extra={"worker": self.worker_id})

    def reload_if_changed(self) -> bool:
        """Pick up an edited config file (``add-region`` appends a region to it).

        The new configuration is checked like at start; when it is invalid the runner keeps
        the one it runs with. Shard workers restart from their checkpoints; leases are kept.
        """
        stamp = _stamp(self.config_path)
        if self.config_path is None or stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        try:
            config = load_config(self.config_path)
            if config == self.config:
                return False
            preflight(config)
        except ReplicatorError as exc:
            log.error(
                "config reload failed; keeping the running configuration",
                extra={"reason": str(exc)},
            )
            return False
        log.info(
            "config changed: restarting shard workers",
            extra={"regions": [r.name for r in config.regions]},
        )
        for ref in list(self.owned):
            self._drop(ref, release=False)
        for region in self.regions.values():
            region.replicator.close()
        if config.replication.conflict_log != self.config.replication.conflict_log:
            if self.conflict_log is not None:
                self.conflict_log.close()
            self.conflict_log = open_conflict_log(config.replication.conflict_log)
        self.config = config
        self.lease_ms = int(config.lease_timeout_seconds * 1000)
        self.finished.clear()
        self.regions = self._regions(config)
        return True

    # -- leases and discovery ----------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def balance(self) -> None:
        """One round: heartbeat, renew, discover shards, hold a fair share of all shards."""
        now = self._now_ms()
        candidates: dict[ShardRef, tuple[str, ShardRef | None]] = {}
        workers = 1
        for name, region in self.regions.items():
            try:
                region.state.heartbeat(
                    self.worker_id, now + self.lease_ms, instance=self.instance, now_ms=now
                )
                self._renew(name, region, now)
                for ref, parent in self._discover(name, region).items():
                    candidates[ref] = (name, parent)
                workers = max(workers, len(region.state.live_workers(now)))
            except ReplicatorError as exc:
                log.warning(
                    "region unavailable for coordination",
                    extra={"region": name, "reason": str(exc)},
                )
        for ref, owned in list(self.owned.items()):
            if not owned.thread.is_alive():
                if owned.worker.done:
                    self.finished.add(ref)
                    self.publish([owned])  # status stops counting a finished shard
                self._drop(ref, release=False)
        share = math.ceil(len(candidates) / workers)
        for ref, (name, parent) in candidates.items():
            if len(self.owned) >= share:
                break
            if ref in self.owned or ref in self.finished:
                continue
            region = self.regions[name]
            try:
                if region.state.acquire(ref, self.worker_id, now, self.lease_ms):
                    self._own(name, region, ref, parent)
            except ReplicatorError as exc:
                log.warning("lease not acquired", extra={"shard": str(ref), "reason": str(exc)})
        while len(self.owned) > share:  # another worker joined: hand shards over
            self._drop(next(reversed(self.owned)), release=True)
        self.publish()
        self._count_parked()

    def _count_parked(self) -> None:
        counts = {(t, name): 0 for t in self.config.tables for name in self.regions}
        for name, region in self.regions.items():
            try:
                for parked in region.parking.parked(self.config.tables):
                    key = (parked.table, name)
                    counts[key] = counts.get(key, 0) + 1
            except ReplicatorError as exc:
                log.warning(
                    "parked records not counted", extra={"region": name, "reason": str(exc)}
                )
        self.parked = counts

    def _renew(self, name: str, region: _Region, now: int) -> None:
        for ref, owned in list(self.owned.items()):
            if owned.region == name and not region.state.renew(
                ref, self.worker_id, now, self.lease_ms
            ):
                log.warning("lease lost", extra={"shard": str(ref), "worker": self.worker_id})
                self._drop(ref, release=False)

    def _discover(self, name: str, region: _Region) -> dict[ShardRef, ShardRef | None]:
        """Unfinished shards of every table's streams in ``name`` -> their parent shard."""
        found: dict[ShardRef, ShardRef | None] = {}
        for table in self.config.tables:
            for arn in region.streams.stream_arns(table):
                shards: list[Shard] = region.streams.shards(arn)
                ids = {shard.shard_id for shard in shards}
                for shard in shards:
                    ref = ShardRef(table, arn, shard.shard_id)
                    if ref in self.finished:
                        continue
                    parent = shard.parent_id if shard.parent_id in ids else None
                    found[ref] = ShardRef(table, arn, parent) if parent else None
        return found

    def _own(self, name: str, region: _Region, ref: ShardRef, parent: ShardRef | None) -> None:
        worker = ShardWorker(
            ref,
            source=region.streams,
            checkpoints=region.state,
            process=region.process,
            targets=list(self.regions),
            parent=parent,
            clock=self.clock,
            page_limit=self.config.page_limit,
            fields=self.config.replication.fields,
            on_lag=self.metrics.lag_observer(ref.table, name),
            parking=region.parking,
            park_after=self.config.park_after_seconds,
            region=name,
        )
        stop = threading.Event()
        thread = threading.Thread(
            target=self._loop, args=(worker, stop), name=f"shard-{ref.shard_id}", daemon=True
        )
        self.owned[ref] = _Owned(worker, thread, stop, name, ref)
        log.info("shard leased", extra={"shard": str(ref), "worker": self.worker_id})
        thread.start()

    def _drop(self, ref: ShardRef, *, release: bool) -> None:
        owned = self.owned.pop(ref)
        owned.stop.set()
        owned.thread.join(timeout=30)
        report = self._report(owned, self.clock.now())
        earlier = self.retired.get((report.table, report.source))
        self.retired[(report.table, report.source)] = (
            report if earlier is None else add_counters(earlier, report)
        )
        if release:
            try:
                self.regions[owned.region].state.release(ref, self.worker_id)
            except ReplicatorError as exc:
                log.warning("lease not released", extra={"shard": str(ref), "reason": str(exc)})

    def _loop(self, worker: ShardWorker, stop: threading.Event) -> None:
        """Poll at once after records; back off while idle, capped for low latency."""
        idle = Backoff(base=0.01, cap=self.config.idle_poll_max_ms / 1000)
        idle_polls = 0  # empty reads in a row
        next_parent_check = 0.0
        while not stop.is_set() and not worker.done:
            try:
                if worker.waiting and self.clock.now() >= next_parent_check:
                    worker.check_parent()
                    next_parent_check = self.clock.now() + 1.0
                read = worker.step()
            except ReplicatorError as exc:
                log.warning(
                    "shard step failed", extra={"shard": str(worker.shard), "reason": str(exc)}
                )
                read = 0
            except Exception:
                log.exception("shard worker crashed", extra={"shard": str(worker.shard)})
                return
            # Alone in its thread (no herd to spread): it waits the ceiling, without jitter.
            idle_polls = 0 if read else idle_polls + 1
            delay = idle.ceiling(idle_polls - 1) if idle_polls else 0.0
            if delay:
                stop.wait(delay)

    # -- progress ----------------------------------------------------------------------
    def _report(self, owned: _Owned, now: float) -> ShardReport:
        return ShardReport(
            table=owned.ref.table,
            source=owned.region,
            stream=owned.ref.stream_label,
            shard_id=owned.ref.shard_id,
            worker=self.worker_id,
            updated_at=now,
            done=owned.worker.done,
            targets=target_reports(owned.worker.stats, self.regions),
        )

    def reports(self) -> list[tuple[ShardReport, bool]]:
        """A report of every shard this process worked on; True for those it holds now."""
        now = self.clock.now()
        held = [(self._report(owned, now), True) for owned in list(self.owned.values())]
        return held + [(report, False) for report in list(self.retired.values())]

    def publish(self, shards: Sequence[_Owned] | None = None) -> None:
        """Write the reports of ``shards`` (default: the held ones) to the state tables,
        where ``status`` reads them."""
        now = self.clock.now()
        for owned in list(self.owned.values()) if shards is None else shards:
            try:
                self.regions[owned.region].state.put(report_to_item(self._report(owned, now)))
            except (ReplicatorError, KeyError) as exc:
                log.warning(
                    "shard report not saved", extra={"region": owned.region, "reason": str(exc)}
                )

    def snapshot(self) -> dict[Pair, PairTotals]:
        """Per (table, source, target) totals since this process started."""
        return pair_totals((report for report, _ in self.reports()), now=self.clock.now())
