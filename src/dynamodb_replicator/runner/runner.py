"""The standalone replicator: ``dynamodb-replicator run --config FILE``.

One process (or several sharing the work through leases) replicates every configured table
among every configured region. For each source region it discovers the table's streams and
shards, takes leases on a fair share of the shards, and runs one ShardWorker thread per
leased shard; the ShardWorker feeds pages to the same ``Replicator.process`` the Lambda
handler uses.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.report_items import report_to_item
from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import ReplicatorError, RetryableTargetError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Clock, ConflictLog
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import LeaseLostError, Shard, ShardRef
from dynamodb_replicator.observe.conflict_log import JsonLinesConflictLog, open_conflict_log
from dynamodb_replicator.observe.contract_log import warn_violations
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.metrics import RunnerMetrics
from dynamodb_replicator.runner.preflight import Checked, Checks, Schemas
from dynamodb_replicator.runner.reachability import Reachability
from dynamodb_replicator.runner.regions import Region, apply_page
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
class _Lease:
    until: float  # epoch seconds: the expiry set by our last acquire or renewal


@dataclass(slots=True)
class _Owned:
    worker: ShardWorker
    thread: threading.Thread
    stop: threading.Event
    region: str
    ref: ShardRef
    lease: _Lease


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
        self._config_stamp = _stamp(config_path)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # This process's claim on the worker id: a second process with the same id refuses.
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
        self.clock = clock or SystemClock()
        self.connect = connect
        self.checks = checks or Checks()
        self.regions: dict[str, Region] = {}
        self.reach = Reachability(self.clock)
        self.schemas: dict[str, Schemas] = {}  # of the regions checked so far
        # The shards each region's last successful discovery found: a failed discovery
        # does not shrink the set the fair share is taken of.
        self.shards: dict[str, dict[ShardRef, ShardRef | None]] = {}
        self.owned: dict[ShardRef, _Owned] = {}
        self.finished: set[ShardRef] = set()
        # Counters of shards this process no longer holds, summed per (table, source): the
        # metrics' counters never go down, and the memory stays bounded.
        self.retired: dict[tuple[str, str], ShardReport] = {}
        self.lease_ms = int(config.lease_timeout_seconds * 1000)
        self.stopping = threading.Event()
        self.conflict_log: JsonLinesConflictLog | None = None
        self._reload_backoff = Backoff(base=1.0, cap=30.0)
        self._reload_failures = 0
        self._reload_at = 0.0
        # Parked records per (table, source), read from the state tables each round.
        self.parked: dict[tuple[str, str], int] = {}
        self.metrics = RunnerMetrics(
            self.reports,
            worker=self.worker_id,
            clock=self.clock,
            parked=lambda: self.parked,
            reachable=lambda: self.reach.states(spec.name for spec in self.config.regions),
        )

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Check the configuration against the regions; create state/tombstone tables.

        Raises ConfigError for what needs fixing; unreachable regions are reported and
        checked again in the background (``check_down``) while the others replicate."""
        checked = self.checks.all(self.config)
        self.conflict_log = open_conflict_log(self.config.replication.conflict_log)
        self._take(checked)
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
                "unreachable": sorted(checked.unreachable),
                "tables": list(self.config.tables),
            },
        )

    def _claim_worker_id(self, regions: dict[str, Region]) -> None:
        """Claim this worker id in every reachable region. A claim another process renews
        refuses the start (the id runs twice); one left to expire (a process that died) is
        taken over when it expires, at most ``lease_timeout_seconds`` later."""
        for name, region in regions.items():
            if not self.reach.is_up(name):
                continue  # claimed at its first heartbeat once it answers
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
                            extra={"worker": self.worker_id, "region": name},
                        )
                    elif (held.holder, held.expires_ms) != (first.holder, first.expires_ms):
                        raise  # renewed meanwhile: the same id runs in another process
                if self.stopping.wait(0.2):
                    return  # stopped while waiting: ``run`` shuts down at once

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
        try:
            while not stop.is_set():
                began = self.clock.now()
                try:
                    self.reload_if_changed()
                    self.check_down()
                    self.balance()
                except Exception:  # a long-running process logs, and tries again next round
                    log.exception("coordination round failed", extra={"worker": self.worker_id})
                # Rounds start every ``interval``, however long one takes: a slow round (a
                # busy server) must not push the next renewal past the leases' deadlines.
                stop.wait(max(0.0, interval - (self.clock.now() - began)))
        finally:
            self.shutdown()

    def _regions(self, config: RunnerConfig) -> dict[str, Region]:
        return {
            spec.name: self.connect(spec, config, self.stopping, self.conflict_log)
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
        for name, region in self.regions.items():
            try:
                if self.reach.is_up(name):
                    region.state.forget_worker(self.worker_id, instance=self.instance)
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
        """Pick up an edited config file (``add-region`` appends a region to it).

        The new configuration is checked like at start; until it loads and passes, the
        runner keeps the one it runs with and tries again (backing off). Shard workers
        restart from their checkpoints; leases are kept.
        """
        stamp = _stamp(self.config_path)
        if self.config_path is None or stamp == self._config_stamp:
            return False
        if self.clock.now() < self._reload_at:
            return False
        try:
            config = load_config(self.config_path)
            checked = None if config == self.config else self.checks.all(config)
        except ReplicatorError as exc:
            self._reload_failures += 1
            delay = self._reload_backoff.ceiling(self._reload_failures - 1)
            self._reload_at = self.clock.now() + delay
            log.error(
                "config reload failed; keeping the running configuration, trying again",
                extra={"reason": str(exc), "retry_in_s": delay},
            )
            return False
        # Only a file that loaded counts as seen: a failure above is tried again.
        self._config_stamp, self._reload_failures = stamp, 0
        if checked is None:
            return False
        self._apply_config(config, checked)
        return True

    def _apply_config(self, config: RunnerConfig, checked: Checked) -> None:
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
        self._take(checked)
        self.lease_ms = int(config.lease_timeout_seconds * 1000)
        self.finished.clear()
        self.shards.clear()
        self.regions = self._regions(config)

    # -- leases and discovery ----------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def balance(self) -> None:
        """One round: heartbeats and renewals, then discovery, then hold a fair share of the
        shards that can be read (those of the regions that answer)."""
        down = {name: (d.since, d.reason) for name, d in self.reach.down().items()}
        # Renewals first, each at its own time: a slow region delays no other's leases.
        for name, region in self._up():
            self._attempt(name, functools.partial(self._renew, name, region, down))
        readable: dict[ShardRef, tuple[str, ShardRef | None]] = {}
        workers = [1]
        for name, region in self._up():
            self._attempt(name, functools.partial(self._look, name, region, workers))
            if self.reach.is_up(name):  # a failed discovery keeps the shards found before
                for ref, parent in self.shards.get(name, {}).items():
                    if ref not in self.finished:
                        readable[ref] = (name, parent)
        self._reap()
        self._share(readable, math.ceil(len(readable) / max(workers)))
        self.publish()
        self._count_parked()

    def _count_parked(self) -> None:
        counts = {(t, name): 0 for t in self.config.tables for name in self.regions}
        for name, region in self._up():
            try:
                for parked in region.parking.parked(self.config.tables):
                    key = (parked.table, name)
                    counts[key] = counts.get(key, 0) + 1
            except ReplicatorError as exc:
                log.warning(
                    "parked records not counted", extra={"region": name, "reason": str(exc)}
                )
        self.parked = counts

    def _up(self) -> list[tuple[str, Region]]:
        return [(name, r) for name, r in self.regions.items() if self.reach.is_up(name)]

    def _attempt(self, name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except RetryableTargetError as exc:
            self.reach.failed(name, str(exc))  # checked again by check_down
        except ReplicatorError as exc:
            log.warning(
                "region unavailable for coordination", extra={"region": name, "reason": str(exc)}
            )

    def _look(self, name: str, region: Region, workers: list[int]) -> None:
        self.shards[name] = self._discover(region)
        workers.append(len(region.state.live_workers(self._now_ms())))

    def _share(self, readable: Mapping[ShardRef, tuple[str, ShardRef | None]], share: int) -> None:
        # Shards held in regions that cannot be read now are kept, and not counted.
        held = [ref for ref, owned in self.owned.items() if self.reach.is_up(owned.region)]
        for ref, (name, parent) in readable.items():
            if len(held) >= share:
                break
            if ref in self.owned:
                continue
            region, now = self.regions[name], self._now_ms()
            try:
                if region.state.acquire(ref, self.worker_id, now, self.lease_ms):
                    self._own(name, region, ref, parent, _Lease((now + self.lease_ms) / 1000))
                    held.append(ref)
            except ReplicatorError as exc:
                log.warning("lease not acquired", extra={"shard": str(ref), "reason": str(exc)})
        while len(held) > share:  # another worker joined: hand shards over
            self._drop(held.pop(), release=True)

    def _reap(self) -> None:
        """Forget the shards whose thread ended (finished, lease lost, or crashed)."""
        for ref, owned in list(self.owned.items()):
            if not owned.thread.is_alive():
                if owned.worker.done:
                    self.finished.add(ref)
                    self.publish([owned])  # status stops counting a finished shard
                self._drop(ref, release=False)

    def _renew(self, name: str, region: Region, down: Mapping[str, tuple[float, str]]) -> None:
        now = self._now_ms()
        region.state.heartbeat(
            self.worker_id, now + self.lease_ms, down, instance=self.instance, now_ms=now
        )
        for ref, owned in list(self.owned.items()):
            if owned.region != name:
                continue
            now = self._now_ms()  # taken before the call: the lease lasts at least this
            if region.state.renew(ref, self.worker_id, now, self.lease_ms):
                late = self.clock.now() > self.deadline(owned.lease)
                owned.lease.until = (now + self.lease_ms) / 1000
                if late:  # its writes failed for want of time: let them go on at once
                    owned.worker.wake()
            else:
                log.warning("lease lost", extra={"shard": str(ref), "worker": self.worker_id})
                self._drop(ref, release=False)

    def _discover(self, region: Region) -> dict[ShardRef, ShardRef | None]:
        """Unfinished shards of every table's streams in the region -> their parent shard."""
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

    def deadline(self, lease: _Lease) -> float:
        """No write starts after this (epoch seconds): the lease expiry less the margin, so
        that none lands after the lease may have passed to another worker."""
        return lease.until - self.lease_ms / 1000 * defaults.LEASE_MARGIN_FRACTION

    def _own(
        self, name: str, region: Region, ref: ShardRef, parent: ShardRef | None, lease: _Lease
    ) -> None:
        def process(
            table: str,
            records: Sequence[Mapping[str, Any]],
            targets: Collection[str],
            logged: Callable[[Conflict], bool] | None = None,
            written: Callable[[], None] | None = None,
        ) -> BatchResult:
            page = (table, records)
            result = apply_page(
                region,
                self.reach,
                page,
                targets,
                # Asked before each write: a renewal during the page moves it on.
                functools.partial(self.deadline, lease),
                logged=logged,
                written=written,
            )
            if result.violations:
                self._note_violations(table, name, result)
            return result

        worker = ShardWorker(
            ref,
            source=region.streams,
            checkpoints=region.state,
            process=process,
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
        self.owned[ref] = _Owned(worker, thread, stop, name, ref, lease)
        log.info("shard leased", extra={"shard": str(ref), "worker": self.worker_id})
        thread.start()

    def _drop(self, ref: ShardRef, *, release: bool) -> None:
        """Stop a shard's thread; release its lease only once its page in flight is done."""
        owned = self.owned.pop(ref)
        owned.stop.set()
        # The page in flight starts no write after the deadline: wait for it until then.
        owned.thread.join(timeout=max(0.0, self.deadline(owned.lease) - self.clock.now()))
        report = self._report(owned, self.clock.now())
        earlier = self.retired.get((report.table, report.source))
        self.retired[(report.table, report.source)] = (
            report if earlier is None else add_counters(earlier, report)
        )
        if not release or not self.reach.is_up(owned.region):
            return  # (a lease in an unreachable region runs out on its own)
        if owned.thread.is_alive():
            # A request started before the deadline is still out: the lease runs out on its
            # own, later than that request could land.
            log.warning("lease left to expire", extra={"shard": str(ref), "worker": self.worker_id})
            return
        try:
            self.regions[owned.region].state.release(ref, self.worker_id)
        except ReplicatorError as exc:
            log.warning("lease not released", extra={"shard": str(ref), "reason": str(exc)})

    def _loop(self, worker: ShardWorker, stop: threading.Event) -> None:
        """Run the shard until stopped; then settle its page in flight."""
        try:
            self._steps(worker, stop)
        finally:
            worker.flush()

    def _steps(self, worker: ShardWorker, stop: threading.Event) -> None:
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
            except LeaseLostError as exc:
                log.warning("lease lost: shard stopped", extra={"reason": str(exc)})
                return
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
            if not self.reach.is_up(owned.region):
                continue  # reported again once the region answers
            try:
                self.regions[owned.region].state.put(report_to_item(self._report(owned, now)))
            except (ReplicatorError, KeyError) as exc:
                log.warning(
                    "shard report not saved", extra={"region": owned.region, "reason": str(exc)}
                )

    def snapshot(self) -> dict[Pair, PairTotals]:
        """Per (table, source, target) totals since this process started."""
        return pair_totals((report for report, _ in self.reports()), now=self.clock.now())
