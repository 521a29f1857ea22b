"""The shards this process holds: one thread each, started when leased and stopped when
dropped, and the reports of every shard it worked on."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from dynamodb_replicator.aws.report_items import report_to_item
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import (
    ReplicatorError,
    RetryableTargetError,
    UnreachableError,
)
from dynamodb_replicator.core.ports import Clock, TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.runner.reachability import Reachability
from dynamodb_replicator.runner.regions import Region, apply_page
from dynamodb_replicator.runner.reports import ShardReport, add_counters, target_reports
from dynamodb_replicator.runner.shard_state import LagObserver
from dynamodb_replicator.runner.shard_thread import Owned, run_shard
from dynamodb_replicator.runner.shardworker import ShardWorker

__all__ = ["Held"]

log = logging.getLogger(__name__)

Violations = Callable[[str, str, BatchResult], None]


class RemovedTargetError(RetryableTargetError):
    """The target's region left the configuration while a page for it was on its way."""

    def __init__(self, target: str) -> None:
        super().__init__(f"{target} was removed from the configuration", region=target)


class Held:
    """The held shards (``owned``), the finished ones, and the counters of those let go."""

    def __init__(
        self,
        worker_id: str,
        clock: Clock,
        reach: Reachability,
        keeper: LeaseKeeper,
        regions: Callable[[], Mapping[str, Region]],
    ) -> None:
        self.worker_id, self.clock, self.reach, self.keeper = worker_id, clock, reach, keeper
        self.regions = regions
        self.owned: dict[ShardRef, Owned] = {}
        self.finished: set[ShardRef] = set()
        # Counters of shards this process no longer holds, summed per (table, source): the
        # metrics' counters never go down, and the memory stays bounded.
        self.retired: dict[tuple[str, str], ShardReport] = {}
        # Dropped by a restart that keeps their leases (``drop(keep=True)``), their threads
        # ended: due for release only if the next round does not take them again.
        self.kept: dict[ShardRef, Lease] = {}

    def wake(self, ref: ShardRef) -> None:
        owned = self.owned.get(ref)
        if owned is not None:
            owned.worker.wake()

    def add_targets(self, targets: Collection[str]) -> None:
        """The held shards replicate to ``targets`` too, from their next step on."""
        for owned in list(self.owned.values()):
            owned.worker.add_targets(targets)

    def remove_targets(self, targets: Collection[str]) -> None:
        """The held shards stop replicating to ``targets``, from their next step on."""
        for owned in list(self.owned.values()):
            owned.worker.remove_targets(targets)

    def own(
        self,
        name: str,
        region: Region,
        ref: ShardRef,
        parent: ShardRef | None,
        lease: Lease,
        *,
        config: RunnerConfig,
        on_lag: LagObserver,
        on_violations: Violations,
    ) -> None:
        """Start the thread of a shard just leased in region ``name``."""
        reach, clock = self.reach, self.clock

        def fence(now: float) -> float:
            return lease.fence(clock, now)

        def process(
            table: str,
            records: Sequence[Mapping[str, Any]],
            targets: Collection[str],
            logged: Callable[[Conflict], bool] | None = None,
            written: Callable[[], None] | None = None,
            *,
            ready: Callable[[], None] | None = None,
        ) -> BatchResult:
            page = (table, records)
            # The fence is asked before each write: a renewal during the page moves it on
            # (also after ``ready`` held the writes for the page before).
            result = apply_page(
                region, reach, page, targets, fence, logged=logged, written=written, ready=ready
            )
            if result.violations:
                on_violations(table, name, result)
            return unknown_targets_failed(result, targets, records)

        stop = threading.Event()
        worker = ShardWorker(
            ref,
            source=region.streams,
            checkpoints=region.state,
            process=process,
            targets=list(self.regions()),
            parent=parent,
            clock=self.clock,
            page_limit=config.page_limit,
            fields=config.replication.fields,
            on_lag=on_lag,
            parking=region.parking,
            park_after=config.park_after_seconds,
            region=name,
            stop=stop,
        )
        idle = config.idle_poll_max_ms / 1000
        thread = threading.Thread(
            target=run_shard,
            args=(worker, stop, self.clock, idle),
            name=f"shard-{ref.shard_id}",
            daemon=True,
        )
        self.owned[ref] = Owned(worker, thread, stop, name, ref, lease)
        log.info(
            "shard leased", extra={"shard": str(ref), "region": name, "worker": self.worker_id}
        )
        thread.start()

    def drop_all(self, refs: Iterable[ShardRef], *, release: bool, keep: bool = False) -> None:
        """``drop`` each of ``refs``, every one told to stop first (``stop``)."""
        dropped = list(refs)
        self.stop(dropped)
        for ref in dropped:
            self.drop(ref, release=release, keep=keep)

    def stop(self, refs: Iterable[ShardRef]) -> None:
        """Tell the threads of ``refs`` to end after their page, and stop renewing their
        leases: before any of them is dropped, so that while the first is waited for none
        starts another page and no fence moves on (each page ends by the fence it had).
        Every fence is fixed before the first ``forget``, which waits for its region's
        renewal in flight: no other lease of the region is renewed meanwhile."""
        stopped = [self.owned[ref] for ref in refs]
        for owned in stopped:
            owned.stop.set()
        self.keeper.fix_fences([owned.lease for owned in stopped])
        for owned in stopped:
            self.keeper.forget(owned.ref)

    def drop(self, ref: ShardRef, *, release: bool, keep: bool = False) -> None:
        """Stop a shard's thread; release its lease only once its page in flight is done.
        ``keep``: a restart keeps the lease for the next round (``settle_kept``)."""
        owned = self.owned.pop(ref)
        owned.stop.set()
        self.keeper.forget(ref)
        # The page in flight starts no write after the deadline: wait for it until then.
        now = self.clock.now()
        owned.thread.join(timeout=max(0.0, owned.lease.fence(self.clock, now) - now))
        report = self.report(owned, self.clock.now())
        earlier = self.retired.get((report.table, report.source))
        self.retired[(report.table, report.source)] = (
            report if earlier is None else add_counters(earlier, report)
        )
        if owned.thread.is_alive():  # its claim must outlive the lease (Runner.shutdown)
            self.keeper.leave(ref, owned.lease)
        elif keep and not release:
            self.kept[ref] = owned.lease  # not due yet: the next round takes it again
        else:
            # Its pages are settled (``run_shard`` flushes them; a page's writer returns
            # only once every write it started answered or was waited out): nothing of it
            # can land any more. The keeper's ticks release it if we do not, so a lease
            # stored ahead of the clock never pins the shard (a crash, a lost lease).
            self.keeper.ended(ref, owned.lease)
        if not release or not self.reach.is_up(owned.region):
            return  # (the keeper's ticks release it, or it runs out on its own)
        if owned.thread.is_alive():
            # A request started before the deadline is still out: the lease runs out on its
            # own, later than that request could land.
            log.warning("lease left to expire", extra={"shard": str(ref), "worker": self.worker_id})
            return
        try:
            self.keeper.release(ref, owned.region)
        except UnreachableError as exc:
            # Still not connected after the retries: an outage (the region's other leases
            # then run out on their own, and a stopping runner does not wait on each).
            self.reach.failed(owned.region, str(exc))
        except ReplicatorError as exc:
            log.warning("lease not released", extra={"shard": str(ref), "reason": str(exc)})

    def reap(self) -> None:
        """Forget the shards whose thread ended (finished, lease lost, or crashed)."""
        for ref, owned in list(self.owned.items()):
            if not owned.thread.is_alive():
                if owned.worker.done:
                    self.finished.add(ref)
                    self.publish([owned])  # status stops counting a finished shard
                # A finished shard's last checkpoint is saved and no page is out: its lease
                # goes back now, so a clean stop need not keep the worker id claimed for it.
                self.drop(ref, release=owned.worker.done)

    def settle_kept(self) -> None:
        """After the round that follows a restart: the kept leases it did not take again
        (``keeper.ended_kept`` ignores one taken since) are due for release, so none of
        them pins its shard (stored while the wall clock ran ahead)."""
        kept, self.kept = self.kept, {}
        for ref, lease in kept.items():
            self.keeper.ended_kept(ref, lease)

    # -- progress ----------------------------------------------------------------------
    def report(self, owned: Owned, now: float) -> ShardReport:
        return ShardReport(
            table=owned.ref.table,
            source=owned.region,
            stream=owned.ref.stream_label,
            shard_id=owned.ref.shard_id,
            worker=self.worker_id,
            updated_at=now,
            done=owned.worker.done,
            targets=target_reports(owned.worker.stats, self.regions()),
        )

    def reports(self) -> list[tuple[ShardReport, bool]]:
        """A report of every shard this process worked on; True for those it holds now."""
        now = self.clock.now()
        held = [(self.report(owned, now), True) for owned in list(self.owned.values())]
        return held + [(report, False) for report in list(self.retired.values())]

    def publish(self, shards: Sequence[Owned] | None = None) -> None:
        """Write the reports of ``shards`` (default: the held ones) to the state tables,
        where ``status`` reads them."""
        now = self.clock.now()
        regions = self.regions()
        for owned in list(self.owned.values()) if shards is None else shards:
            if not self.reach.is_up(owned.region):
                continue  # reported again once the region answers
            try:
                regions[owned.region].state.put(report_to_item(self.report(owned, now)))
            except (ReplicatorError, KeyError) as exc:
                log.warning(
                    "shard report not saved", extra={"region": owned.region, "reason": str(exc)}
                )


def unknown_targets_failed(
    result: BatchResult, targets: Collection[str], records: Sequence[Mapping[str, Any]]
) -> BatchResult:
    """A target the replicator does not know (a reload removed its region while the page
    was on its way) is reported failed at the page's first record: nothing of it was
    written, so no position of it may be saved (the shard's thread drops it next step)."""
    unknown = [t for t in targets if t not in result.targets]
    if not unknown or not records:
        return result
    first = str(records[0]["dynamodb"]["SequenceNumber"])
    failed = {
        t: TargetResult(t, failed_sequence=first, error=RemovedTargetError(t)) for t in unknown
    }
    return dataclasses.replace(result, targets={**result.targets, **failed})
