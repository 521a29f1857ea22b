"""One shard of one source stream: read it once, apply it to every target, each target at
its own pace.

A *cursor* is an iterator position shared by the targets that are at the same point. A page
goes through ``process`` for the cursor's targets; targets that fail split off into their own
cursor, positioned after the last record they accepted, and retry with backoff; the others
read on. Cursors that reach the same position merge again, so a healthy shard is read once.

Each target's position is checkpointed after every page, only once that target accepted
(or rejected as stale) the records. A child shard is read for a target only once its
parent is finished for that target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.lag import batch_ages
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import (
    END,
    CheckpointStore,
    ExpiredIteratorError,
    Page,
    ShardRef,
    StreamSource,
    TrimmedDataError,
)

__all__ = ["Cursor", "ShardStats", "ShardWorker"]

log = logging.getLogger(__name__)

Process = Callable[[str, Sequence[Mapping[str, Any]], Collection[str]], BatchResult]
# Told the lag (seconds) of every page a target accepted, e.g. to feed a histogram.
LagObserver = Callable[[str, float], None]


@dataclass(slots=True)
class Cursor:
    targets: set[str]
    position: str | None  # last SequenceNumber handled; None: from TRIM_HORIZON
    iterator: str | None = None
    retry_at: float = 0.0
    failures: int = 0
    # Records up to ``position``, counted from where this worker started reading: the
    # furthest cursor's count minus a cursor's count is that cursor's backlog.
    count: int = 0


@dataclass(slots=True)
class ShardStats:
    """Counters and gauges per target region, read by metrics, progress and status.

    Written only by the shard's thread; readers copy the dicts.
    """

    counters: dict[str, PairCounters] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    last_error_at: dict[str, float] = field(default_factory=dict)
    lag_s: dict[str, float] = field(default_factory=dict)
    stream_age_s: dict[str, float] = field(default_factory=dict)
    advanced_at: dict[str, float] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    # The furthest cursor read a full page last: more records wait behind the backlog.
    backlog_more: bool = False
    records: int = 0
    echoes: int = 0


class ShardWorker:
    """The lifecycle of one shard: start (load checkpoints), process pages, shard end."""

    def __init__(
        self,
        shard: ShardRef,
        *,
        source: StreamSource,
        checkpoints: CheckpointStore,
        process: Process,
        targets: Sequence[str],
        parent: ShardRef | None,
        clock: Clock,
        page_limit: int = 1000,
        retry_cap: float = 30.0,
        fields: SystemAttributes | None = None,
        on_lag: LagObserver | None = None,
    ) -> None:
        self.fields = fields or SystemAttributes()
        self.targets = tuple(targets)
        self.shard = shard
        self.source = source
        self.checkpoints = checkpoints
        self.process = process
        self.parent = parent
        self.clock = clock
        self.page_limit = page_limit
        # One cursor waits alone (no herd to spread): it waits the ceiling, without jitter.
        self.backoff = Backoff(base=0.1, cap=retry_cap)
        self.on_lag = on_lag
        self.stats = ShardStats()
        self.frontier = 0  # the furthest cursor's count
        self.cursors: list[Cursor] = []
        self.waiting: set[str] = set()  # targets whose parent shard is not finished yet
        self.finished: set[str] = set()
        saved = checkpoints.load(shard)
        started = clock.now()
        for target in targets:
            self.stats.advanced_at[target] = started
            position = saved.get(target)
            if position == END:
                self.finished.add(target)
            elif position is None and parent is not None:
                self.waiting.add(target)
            else:
                self._join(target, position)

    @property
    def done(self) -> bool:
        return not self.cursors and not self.waiting

    def _join(self, target: str, position: str | None) -> None:
        for cursor in self.cursors:
            if cursor.position == position and cursor.failures == 0:
                cursor.targets.add(target)
                return
        self.cursors.append(Cursor({target}, position))

    def check_parent(self) -> None:
        """Let targets whose parent shard is finished start on this one."""
        if not self.waiting or self.parent is None:
            return
        parent_positions = self.checkpoints.load(self.parent)
        for target in sorted(self.waiting):
            if parent_positions.get(target) == END:
                self.waiting.discard(target)
                self._join(target, None)

    # -- wake (runner/reachability) ---------------------------------------------------
    def wake(self) -> None:
        """Let waiting cursors try at the next step (a region they wait for is back).
        Called from the coordinator thread: one float per cursor, read by the next step."""
        for cursor in list(self.cursors):
            cursor.retry_at = 0.0

    # -- end wake -----------------------------------------------------------------------
    def step(self) -> int:
        """Read and apply one page per ready cursor; the number of records read."""
        read = 0
        now = self.clock.now()
        for cursor in list(self.cursors):
            if cursor.retry_at <= now:
                read += self._advance(cursor)
        self._merge()
        return read

    def _page(self, cursor: Cursor) -> Page | None:
        try:
            if cursor.iterator is None:
                cursor.iterator = self.source.iterator(
                    self.shard.stream_arn, self.shard.shard_id, cursor.position
                )
            return self.source.read(cursor.iterator, self.page_limit)
        except ExpiredIteratorError:
            cursor.iterator = None  # take a new one at the same position next time
        except TrimmedDataError as exc:
            cursor.iterator = None
            if cursor.position is not None:
                log.error(
                    "checkpoint is older than the stream retention: changes were lost for "
                    "these targets; run `dynamodb-replicator repair` (or add-region) for them",
                    extra={
                        "shard": str(self.shard),
                        "targets": sorted(cursor.targets),
                        "reason": str(exc),
                    },
                )
            cursor.position = None  # restart at TRIM_HORIZON (also DynamoDB Local's quirk)
        except ReplicatorError as exc:
            self._back_off(cursor, str(exc))
        return None

    def _advance(self, cursor: Cursor) -> int:
        page = self._page(cursor)
        if page is None:
            return 0
        records = page.records
        if cursor.count >= self.frontier:
            self.stats.backlog_more = len(records) >= self.page_limit
        if records:
            self.stats.records += len(records)
            result = self.process(self.shard.table, records, cursor.targets)
            self._settle(cursor, records, result)
            self._note_backlog()
        if cursor in self.cursors and cursor.failures == 0:
            cursor.iterator = page.next_iterator
            if page.next_iterator is None:  # closed shard, read to its end
                self._finish(cursor)
        return len(records)

    def _settle(
        self, cursor: Cursor, records: Sequence[Mapping[str, Any]], result: BatchResult
    ) -> None:
        last = str(records[-1]["dynamodb"]["SequenceNumber"])
        positions: dict[str, str] = {}
        failed_targets: dict[str, tuple[str | None, int]] = {}
        self.stats.echoes += result.echoes
        now = self.clock.now()
        ages = batch_ages(records, now, self.fields)
        for target in sorted(cursor.targets):
            self._count(target, result)
            failed = result.failed_sequence(target)
            if failed is None:
                positions[target] = last
                self.stats.advanced_at[target] = now
                if ages.timestamp is not None:
                    self.stats.lag_s[target] = ages.timestamp
                    if self.on_lag is not None:
                        self.on_lag(target, ages.timestamp)
                if ages.stream is not None:
                    self.stats.stream_age_s[target] = ages.stream
                continue
            before = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
            accepted = [s for s in before if int(s) < int(failed)]
            position = accepted[-1] if accepted else cursor.position
            failed_targets[target] = (position, cursor.count + len(accepted))
            if accepted:
                self.stats.advanced_at[target] = now
        for target, (position, _) in failed_targets.items():
            if position is not None and position != cursor.position:
                positions[target] = position
        self.checkpoints.save(self.shard, positions)
        if not failed_targets:
            cursor.position = last
            cursor.count += len(records)
            cursor.failures = 0
            return
        if len(failed_targets) == len(cursor.targets) and len(set(failed_targets.values())) == 1:
            cursor.position, cursor.count = next(iter(failed_targets.values()))
            cursor.iterator = None
            self._back_off(cursor, self.stats.last_error[next(iter(failed_targets))])
            return
        cursor.targets -= set(failed_targets)
        cursor.position = last
        cursor.count += len(records)
        if not cursor.targets:
            self.cursors.remove(cursor)
        for target, (position, count) in failed_targets.items():
            split = Cursor({target}, position, count=count)
            self.cursors.append(split)
            self._back_off(split, self.stats.last_error[target])

    def _count(self, target: str, result: BatchResult) -> None:
        stats = self.stats
        counted = PairCounters.of(result, target)
        # One assignment of a frozen value: a reader on another thread sees all or nothing.
        stats.counters[target] = stats.counters.get(target, PairCounters()) + counted
        if not counted.failed:
            return
        outcome = result.targets.get(target)
        error = (outcome.error if outcome else None) or (
            result.record_failures[0].error if result.record_failures else None
        )
        stats.last_error[target] = str(error)
        stats.last_error_at[target] = self.clock.now()

    def _note_backlog(self) -> None:
        self.frontier = max([self.frontier, *(c.count for c in self.cursors)])
        backlog = dict.fromkeys(self.targets, 0)
        for cursor in self.cursors:
            for target in cursor.targets:
                backlog[target] = self.frontier - cursor.count
        self.stats.backlog = backlog

    def _back_off(self, cursor: Cursor, reason: str) -> None:
        cursor.failures += 1
        delay = self.backoff.ceiling(cursor.failures)
        cursor.retry_at = self.clock.now() + delay
        log.warning(
            "shard paused for some targets",
            extra={
                "shard": str(self.shard),
                "targets": sorted(cursor.targets),
                "retry_in_s": round(delay, 2),
                "reason": reason,
            },
        )

    def _finish(self, cursor: Cursor) -> None:
        self.checkpoints.save(self.shard, {target: END for target in cursor.targets})
        self.finished |= cursor.targets
        self.cursors.remove(cursor)

    def _merge(self) -> None:
        by_position: dict[str | None, Cursor] = {}
        for cursor in list(self.cursors):
            twin = by_position.get(cursor.position)
            if twin is None:
                by_position[cursor.position] = cursor
                continue
            # Same position: one iterator serves both (the one already positioned).
            keep, drop = (twin, cursor) if twin.iterator or not cursor.iterator else (cursor, twin)
            keep.targets |= drop.targets
            keep.count = max(keep.count, drop.count)
            keep.failures = min(keep.failures, drop.failures)
            keep.retry_at = min(keep.retry_at, drop.retry_at)
            self.cursors.remove(drop)
            by_position[cursor.position] = keep
