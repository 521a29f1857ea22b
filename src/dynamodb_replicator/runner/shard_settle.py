"""How a page's result moves one shard's cursors: each target's checkpoint after the last
record it accepted (or rejected as stale), a failed target split off into a cursor of its
own that backs off, and the counters and backlog ``status`` reads (runner/shardworker.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import DeadlineError, ReplicatorError
from dynamodb_replicator.core.lag import Ages, batch_ages
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import END, CheckpointStore, ShardRef
from dynamodb_replicator.runner.count_once import CountOnce
from dynamodb_replicator.runner.parker import Parker
from dynamodb_replicator.runner.positions import ShardPositions
from dynamodb_replicator.runner.shard_state import Cursor, LagObserver, ShardStats, error_at

__all__ = ["Settling"]

# The shard worker's logger: one name for every message about a shard's progress.
log = logging.getLogger("dynamodb_replicator.runner.shardworker")


class Settling:
    """The part of ShardWorker that settles a page's result (its state is set there)."""

    shard: ShardRef
    targets: tuple[str, ...]
    checkpoints: CheckpointStore
    clock: Clock
    fields: SystemAttributes
    backoff: Backoff
    on_lag: LagObserver | None
    stats: ShardStats
    cursors: list[Cursor]
    waiting: set[str]
    finished: set[str]
    positions: ShardPositions
    once: CountOnce
    parker: Parker

    def _settle(
        self, cursor: Cursor, records: Sequence[Mapping[str, Any]], result: BatchResult
    ) -> bool:
        last = str(records[-1]["dynamodb"]["SequenceNumber"])
        positions: dict[str, str] = {}
        failures: dict[str, tuple[str, ReplicatorError | None]] = {}
        self.stats.echoes += result.echoes
        now = self.clock.now()
        ages = batch_ages(records, now, self.fields)
        for target in sorted(cursor.targets):
            self._count(target, result)
            failed = result.failed_sequence(target)
            if failed is None:
                positions[target] = last
                self._advanced(target, now, ages)
                continue
            failures[target] = (failed, error_at(result, target, failed))
        self.once.logged_all(result)
        cursor.size.settled(late=any(isinstance(e, DeadlineError) for _, e in failures.values()))
        failed_targets = self._failed_positions(cursor, records, failures, positions, now)
        self.checkpoints.save(self.shard, positions)
        for target, position in positions.items():
            self.positions.moved(target, position)
            self.parker.passed(target, position)
        self.once.forget(self.positions.checkpoint, self._active())
        moved_on = self.parker.check(records, failures)
        self._split(cursor, last, failed_targets)
        for other in self.cursors:
            if other.targets & moved_on:  # parked: read again at once, without the record
                other.retry_at = now
        return bool(failures)

    def _advanced(self, target: str, now: float, ages: Ages) -> None:
        """``target`` accepted a whole page at ``now``: its lag is the page's."""
        self.stats.advanced_at[target] = now
        if ages.timestamp is not None:
            self.stats.lag_s[target] = ages.timestamp
            if self.on_lag is not None:
                self.on_lag(target, ages.timestamp)
        if ages.stream is not None:
            self.stats.stream_age_s[target] = ages.stream

    def _failed_positions(
        self,
        cursor: Cursor,
        records: Sequence[Mapping[str, Any]],
        failures: Mapping[str, tuple[str, ReplicatorError | None]],
        positions: dict[str, str],
        now: float,
    ) -> dict[str, str | None]:
        """Each failed target's position: after the last record before its failure."""
        failed_targets: dict[str, str | None] = {}
        for target, (failed, _) in failures.items():
            before = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
            accepted = [s for s in before if int(s) < int(failed)]
            position = accepted[-1] if accepted else cursor.position
            failed_targets[target] = position
            if accepted:
                self.stats.advanced_at[target] = now
            if position is not None and position != cursor.position:
                positions[target] = position
        return failed_targets

    def _split(self, cursor: Cursor, last: str, failed_targets: Mapping[str, str | None]) -> None:
        if not failed_targets:
            cursor.position = last
            cursor.failures = 0
            return
        if len(failed_targets) == len(cursor.targets) and len(set(failed_targets.values())) == 1:
            cursor.position = next(iter(failed_targets.values()))
            cursor.iterator = None
            self._back_off(cursor, self.stats.last_error[next(iter(failed_targets))])
            return
        cursor.targets -= set(failed_targets)
        cursor.position = last
        if not cursor.targets:
            self.cursors.remove(cursor)
        for target, position in failed_targets.items():
            split = Cursor({target}, position, cursor.size.split())
            self.cursors.append(split)
            self._back_off(split, self.stats.last_error[target])

    def _count(self, target: str, result: BatchResult) -> None:
        stats = self.stats
        counted = self.once.count(target, result)
        # One assignment of a frozen value: a reader on another thread sees all or nothing.
        stats.counters[target] = stats.counters.get(target, PairCounters()) + counted
        if not counted.failed:
            return
        failed = result.failed_sequence(target)
        stats.last_error[target] = str(error_at(result, target, failed or ""))
        stats.last_error_at[target] = self.clock.now()

    def _active(self) -> set[str]:
        return {t for c in self.cursors for t in c.targets}

    def _note_backlog(self) -> None:
        self.positions.prune(self._active())
        backlog: dict[str, int] = {}
        more: dict[str, bool] = {}
        for target in self.targets:
            if target in self.finished or target in self.waiting:
                backlog[target], more[target] = 0, False  # the parent shard's report says
            else:
                backlog[target], more[target] = self.positions.backlog(target)
        # One assignment each: a reader on another thread sees whole dicts.
        self.stats.backlog, self.stats.backlog_more = backlog, more

    def _back_off(self, cursor: Cursor, reason: str) -> None:
        cursor.failures += 1
        delay = self.backoff.ceiling(cursor.failures)
        cursor.retry_at = self.clock.now() + delay
        log.warning(
            "replication to these targets waits for a retry (status shows the stall)",
            extra={
                "shard": str(self.shard),
                "targets": sorted(cursor.targets),
                "after": cursor.position,
                "retry_in_s": round(delay, 2),
                "reason": reason,
            },
        )

    def _finish(self, cursor: Cursor) -> None:
        self.checkpoints.save(self.shard, {target: END for target in cursor.targets})
        self.finished |= cursor.targets
        self.cursors.remove(cursor)
