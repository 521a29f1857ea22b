"""One shard of one source stream: read it once, apply it to every target, each target at
its own pace.

A *cursor* is an iterator position shared by the targets that are at the same point. A page
goes through ``process`` for the cursor's targets; targets that fail split off into their own
cursor, positioned after the last record they accepted, and retry with backoff; the others
read on. Cursors that reach the same position merge again, so a healthy shard is read once.

Each target's position is checkpointed after every page, only once that target accepted
(or rejected as stale) the records. A child shard is read for a target only once its
parent is finished for that target.

A replayed page counts and logs only what no earlier attempt counted or logged. A record
that fails by itself the same way for ``park_after`` seconds is parked (core/parking.py)
and the shard moves on past it; a target region that is down is waited for, never parked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import DeadlineError, ReplicatorError
from dynamodb_replicator.core.lag import batch_ages
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.parking import ParkingLot, PoisonWatch
from dynamodb_replicator.core.ports import Clock, TargetResult
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
from dynamodb_replicator.runner.count_once import CountOnce
from dynamodb_replicator.runner.page_size import PageSize
from dynamodb_replicator.runner.parker import Parker
from dynamodb_replicator.runner.pipeline import Flight
from dynamodb_replicator.runner.positions import ShardPositions
from dynamodb_replicator.runner.shard_state import (
    Cursor,
    LagObserver,
    Process,
    ShardStats,
    error_at,
)

__all__ = ["Cursor", "LagObserver", "Process", "ShardStats", "ShardWorker"]

log = logging.getLogger(__name__)


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
        parking: ParkingLot | None = None,
        park_after: float = defaults.PARK_AFTER_SECONDS,
        region: str = "",
    ) -> None:
        self.fields = fields or SystemAttributes()
        self.targets = tuple(targets)
        self.shard = shard
        self.source = source
        self.checkpoints = checkpoints
        self.process = process
        self.parent = parent
        self.clock = clock
        self.size = PageSize(page_limit)  # smaller after a page ran out of time
        # One cursor waits alone (no herd to spread): it waits the ceiling, without jitter.
        self.backoff = Backoff(base=0.1, cap=retry_cap)
        self.on_lag = on_lag
        self.stats = ShardStats()
        self.cursors: list[Cursor] = []
        self.waiting: set[str] = set()  # targets whose parent shard is not finished yet
        self.finished: set[str] = set()
        saved = checkpoints.load(shard)
        self.positions = ShardPositions(saved)
        self.once = CountOnce(targets)
        self.parker = Parker(
            shard, region, parking, PoisonWatch(park_after), self.stats, clock=clock
        )
        self._joining: frozenset[str] = frozenset()  # set by ``add_targets``, any thread
        self._leaving: frozenset[str] = frozenset()  # set by ``remove_targets``, any thread
        self._joining_lock = threading.Lock()
        self._start(targets, saved)

    def _start(self, targets: Iterable[str], saved: Mapping[str, str]) -> None:
        started = self.clock.now()
        for target in targets:
            self.stats.advanced_at[target] = started
            position = saved.get(target)
            if position == END:
                self.finished.add(target)
            elif position is None and self.parent is not None:
                self.waiting.add(target)
            else:
                self._join(target, position)

    def add_targets(self, targets: Iterable[str]) -> None:
        """Replicate to ``targets`` too, from their checkpoints (a reload added a region).

        Called from the coordinator thread: the set is handed over under a lock and taken
        up by the shard's own thread at its next step, so pages in flight and their
        cursors are untouched."""
        with self._joining_lock:
            self._leaving -= frozenset(targets)  # a region removed, then added again
            self._joining |= frozenset(targets) - set(self.targets)

    def remove_targets(self, targets: Iterable[str]) -> None:
        """Stop replicating to ``targets`` (a reload removed their regions), at the next
        step of the shard's own thread: no page starts for them after it, and no position
        of theirs is saved after it (a page out with them settles the others' only)."""
        with self._joining_lock:
            self._leaving |= frozenset(targets)
            self._joining -= self._leaving

    def _take_leaving(self) -> None:
        with self._joining_lock:
            gone = self._leaving & set(self.targets)
        if not gone:
            return
        for cursor in list(self.cursors):
            cursor.targets -= gone
            if cursor.targets:
                continue
            self.cursors.remove(cursor)
            flight, cursor.inflight = cursor.inflight, None
            if flight is not None:
                self._discard(flight)  # its writes end before this returns: none run unseen
        self.waiting -= gone
        self.finished -= gone
        self.targets = tuple(t for t in self.targets if t not in gone)

    def _take_joining(self) -> None:
        with self._joining_lock:
            new = sorted(self._joining - set(self.targets))
        if not new:
            return
        saved = self.checkpoints.load(self.shard)  # a failure: taken up at a later step
        with self._joining_lock:
            self._joining -= set(new)
        self.targets += tuple(new)
        for target in new:
            if saved.get(target) not in (None, END):
                self.positions.moved(target, saved[target])
        # ``_join`` adds none to a cursor with a page in flight (that page's result does not
        # cover it): it gets a cursor of its own, which ``_merge`` joins to its twin later.
        self._start(new, saved)

    @property
    def done(self) -> bool:
        # A target handed over while the last page was out has still the shard to read.
        return not self.cursors and not self.waiting and not self._joining

    def _join(self, target: str, position: str | None) -> None:
        for cursor in self.cursors:
            if cursor.position == position and cursor.failures == 0 and cursor.inflight is None:
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
        self._take_leaving()
        self._take_joining()
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
            return self.source.read(cursor.iterator, self.size.limit)
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
        """Settle one page of ``cursor``; start the next one's writes while it settles."""
        flight, cursor.inflight = cursor.inflight, None
        read = 0
        if flight is None:
            page = self._page(cursor)
            if page is None:
                return 0
            read = len(page.records)
            if not page.records:
                self._note_backlog()
                cursor.iterator = page.next_iterator
                if page.next_iterator is None:  # closed shard, read to its end
                    self._finish(cursor)
                return 0
            flight = self._launch(cursor, page)
        follower: Flight | None = None
        try:
            ahead, ahead_failed = self._read_ahead(cursor, flight)
            flight.wait_written()  # the next page's writes start after this page's writes
            if ahead is not None and ahead.records:
                follower = self._launch(cursor, ahead)
            failed = self._complete(cursor, flight)
        except BaseException:
            # Nothing of either page may run on unseen: wait for both, read them again.
            for unsettled in (flight, follower):
                if unsettled is not None:
                    self._discard(unsettled)
            cursor.iterator = None  # read again from the last checkpoint
            raise
        if failed and follower is not None:
            follower.finish_quietly()  # nothing of it may overlap a split cursor's retry
        self._carry(cursor, flight, ahead, ahead_failed, follower)
        return read + (len(ahead.records) if ahead is not None else 0)

    def _launch(self, cursor: Cursor, page: Page) -> Flight:
        """Start applying ``page`` to the cursor's targets; the cursor reads on after it."""
        records = page.records
        self.positions.read(
            (str(r["dynamodb"]["SequenceNumber"]) for r in records),
            full=len(records) >= self.size.limit,
        )
        self.stats.records += len(records)
        cursor.iterator = page.next_iterator
        targets = frozenset(cursor.targets)
        kept = self.parker.kept(records, targets)
        if not kept:
            return Flight.done(page, targets, BatchResult({t: TargetResult(t) for t in targets}))

        def run(written: Callable[[], None]) -> BatchResult:
            return self.process(
                self.shard.table, kept, targets, logged=self.once.logged, written=written
            )

        return Flight.launch(page, targets, run, f"page-{self.shard.shard_id}")

    def _read_ahead(self, cursor: Cursor, flight: Flight) -> tuple[Page | None, bool]:
        """The page after ``flight``, read while it is applied; (None, True) when the read
        failed (the next step reads again, from the checkpoint). Only when the cursor is
        the only one moving: cursors that move side by side must be able to merge."""
        if flight.page.next_iterator is None or cursor.iterator is None or cursor.failures:
            return None, False
        if any(other.failures == 0 for other in self.cursors if other is not cursor):
            return None, False
        try:
            return self.source.read(cursor.iterator, self.size.limit), False
        except ReplicatorError:
            return None, True

    def _complete(self, cursor: Cursor, flight: Flight) -> bool:
        """Settle ``flight``'s result; True when a target failed in it."""
        result = flight.result()
        # Targets that split off while it was in flight: counted here, checkpointed by their
        # own cursor when it gets there (the replay counts only what is not counted yet).
        for target in sorted(flight.targets - cursor.targets):
            self._count(target, result)
        failed = self._settle(cursor, flight.records, result)
        self._note_backlog()
        return failed

    def _carry(
        self,
        cursor: Cursor,
        flight: Flight,
        ahead: Page | None,
        ahead_failed: bool,
        follower: Flight | None,
    ) -> None:
        """After ``flight`` settled: keep the page read ahead in flight, or finish."""
        healthy = cursor in self.cursors and cursor.failures == 0
        if follower is not None:
            if healthy:
                cursor.inflight = follower
            else:
                self._discard(follower)
                cursor.iterator = None  # read the discarded page again, from the checkpoint
            return
        if not healthy:
            return
        if ahead is not None:  # an empty page
            self._note_backlog()
            cursor.iterator = ahead.next_iterator
            ended = ahead.next_iterator is None
        else:
            ended = flight.page.next_iterator is None
            if ahead_failed:
                cursor.iterator = None
        if ended:  # closed shard, read to its end
            self._finish(cursor)

    def _discard(self, flight: Flight) -> None:
        """Let a page read ahead finish, keeping what it did in the counters (its replay
        counts only the rest) but no checkpoint: it is read and applied again (the apply
        rule makes that harmless)."""
        result = flight.finish_quietly()
        if result is not None:
            for target in sorted(flight.targets):
                self._count(target, result)
            self.once.logged_all(result)

    def flush(self) -> None:
        """Settle the pages still in flight (the shard stops), so that none of their
        writes runs on after this returns; their checkpoints are saved if the lease
        still allows it."""
        for cursor in list(self.cursors):
            flight, cursor.inflight = cursor.inflight, None
            if flight is None:
                continue
            try:
                self._complete(cursor, flight)
            except Exception as exc:
                log.warning(
                    "page in flight not checkpointed; it is replayed",
                    extra={"shard": str(self.shard), "reason": str(exc)},
                )

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
                self.stats.advanced_at[target] = now
                if ages.timestamp is not None:
                    self.stats.lag_s[target] = ages.timestamp
                    if self.on_lag is not None:
                        self.on_lag(target, ages.timestamp)
                if ages.stream is not None:
                    self.stats.stream_age_s[target] = ages.stream
                continue
            failures[target] = (failed, error_at(result, target, failed))
        self.once.logged_all(result)
        self.size.settled(late=any(isinstance(e, DeadlineError) for _, e in failures.values()))
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
            split = Cursor({target}, position)
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

    def _merge(self) -> None:
        by_position: dict[str | None, Cursor] = {}
        for cursor in list(self.cursors):
            if cursor.inflight is not None:
                continue  # its position is not where it reads next
            twin = by_position.get(cursor.position)
            if twin is None:
                by_position[cursor.position] = cursor
                continue
            # Same position: one iterator serves both (the one already positioned).
            keep, drop = (twin, cursor) if twin.iterator or not cursor.iterator else (cursor, twin)
            keep.targets |= drop.targets
            keep.failures = min(keep.failures, drop.failures)
            keep.retry_at = min(keep.retry_at, drop.retry_at)
            self.cursors.remove(drop)
            by_position[cursor.position] = keep
