"""How a shard worker reads and applies its pages, two in flight: while one page settles,
the next is read and its writes start once the first one's writes are done
(runner/pipeline.py, runner/shardworker.py). Behind (``Flight.behind``, set when a page is
read), the next page is read while the first one writes; caught up, once its writes are
done (fresher records, less lag).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.lag import batch_ages
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import (
    ExpiredIteratorError,
    Page,
    StreamSource,
    TrimmedDataError,
)
from dynamodb_replicator.runner.pipeline import Flight
from dynamodb_replicator.runner.shard_settle import Settling
from dynamodb_replicator.runner.shard_state import Cursor, Process

__all__ = ["Pages"]

log = logging.getLogger("dynamodb_replicator.runner.shardworker")  # see shard_settle.py

# A page short of its limit whose last record is at least this old (by its stream record's
# ApproximateCreationDateTime, whole seconds on AWS) was cut short by GetRecords' 1 MB in a
# backlog, not read at the shard's end. DynamoDB Local truncates that time to the minute:
# there, short pages count as behind for up to a minute (read ahead, as when behind).
BEHIND_SECONDS = 2.0


class Pages(Settling):
    """The part of ShardWorker that reads and applies pages (its state is set there)."""

    source: StreamSource
    process: Process

    def _page(self, cursor: Cursor) -> Page | None:
        try:
            if cursor.iterator is None:
                cursor.iterator = self.source.iterator(
                    self.shard.stream_arn, self.shard.shard_id, cursor.position
                )
            return self.source.read(cursor.iterator, cursor.size.limit)
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
            flight, read = self._first_flight(cursor)
            if flight is None:
                return 0
        follower: Flight | None = None
        try:
            # Behind: the next page is there already, read while this one writes. Caught
            # up: read once its writes are done, so the next page holds what arrived
            # meanwhile and no record waits a whole page for the one after it.
            behind = flight.behind
            ahead, ahead_failed = self._read_ahead(cursor, flight) if behind else (None, False)
            flight.wait_written()  # the next page's writes start after this page's writes
            if not behind:
                ahead, ahead_failed = self._read_ahead(cursor, flight)
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

    def _first_flight(self, cursor: Cursor) -> tuple[Flight | None, int]:
        """Read a page and start its writes; (None, 0) when there is none to apply."""
        page = self._page(cursor)
        if page is None:
            return None, 0
        if not page.records:
            self._note_backlog()
            cursor.iterator = page.next_iterator
            if page.next_iterator is None:  # closed shard, read to its end
                self._finish(cursor)
            return None, 0
        return self._launch(cursor, page), len(page.records)

    def _launch(self, cursor: Cursor, page: Page) -> Flight:
        """Start applying ``page`` to the cursor's targets; the cursor reads on after it."""
        records = page.records
        full = len(records) >= cursor.size.limit
        self.positions.read((str(r["dynamodb"]["SequenceNumber"]) for r in records), full=full)
        behind = full or self._cut_short(page)
        self.stats.records += len(records)
        cursor.iterator = page.next_iterator
        targets = frozenset(cursor.targets)
        kept = self.parker.kept(records, targets)
        if not kept:
            done = BatchResult({t: TargetResult(t) for t in targets})
            return Flight.done(page, targets, done, behind=behind)

        def run(written: Callable[[], None]) -> BatchResult:
            return self.process(
                self.shard.table, kept, targets, logged=self.once.logged, written=written
            )

        name = f"page-{self.shard.shard_id}"
        return Flight.launch(page, targets, run, name, behind=behind)

    def _cut_short(self, page: Page) -> bool:
        """Was ``page``, short of its limit, cut by GetRecords' 1 MB in a backlog? Its last
        record is older than ``BEHIND_SECONDS`` (a caught-up shard's records are younger)."""
        age = batch_ages(page.records, self.clock.now(), self.fields).stream
        return age is not None and age >= BEHIND_SECONDS

    def _read_ahead(self, cursor: Cursor, flight: Flight) -> tuple[Page | None, bool]:
        """The page after ``flight``, read while it is applied; (None, True) when the read
        failed (the next step reads again, from the checkpoint). Only when the cursor is
        the only one moving: cursors that move side by side must be able to merge."""
        if flight.page.next_iterator is None or cursor.iterator is None or cursor.failures:
            return None, False
        if any(other.failures == 0 for other in self.cursors if other is not cursor):
            return None, False
        try:
            return self.source.read(cursor.iterator, cursor.size.limit), False
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
