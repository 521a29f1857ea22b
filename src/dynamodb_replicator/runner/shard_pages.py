"""How a shard worker reads and applies its pages, up to ``IN_FLIGHT`` in flight: while
the oldest settles, the later ones read and write, each page after the writes of the pages
before it that share a key with it (runner/pipeline.py, runner/shardworker.py).

Behind (``Flight.behind``, set when a page is read), the next page is read at once. Caught
up, the next read comes ``READ_CADENCE`` of a page's round trip after the last (fresher
records, less lag, without a GetRecords call per record); a read that finds nothing looks
again ``LOOK_AGAIN_S`` later instead of waiting for the pages in flight, unless the oldest
of them ends first (it is settled then: its checkpoint and counts need no new records).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from dynamodb_replicator.core import defaults
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
from dynamodb_replicator.runner.pipeline import Flight, StoppedPageError
from dynamodb_replicator.runner.shard_settle import Settling
from dynamodb_replicator.runner.shard_state import Cursor, Process

__all__ = ["Pages"]

log = logging.getLogger("dynamodb_replicator.runner.shardworker")  # see shard_settle.py

# A page short of its limit whose last record is at least this old (by its stream record's
# ApproximateCreationDateTime, whole seconds on AWS) was cut short by GetRecords' 1 MB in a
# backlog, not read at the shard's end. DynamoDB Local truncates that time to the minute:
# there, short pages count as behind for up to a minute (read ahead, as when behind).
BEHIND_SECONDS = 2.0

# Pages of a cursor in flight, the oldest settling.
IN_FLIGHT = defaults.PAGES_IN_FLIGHT

# Caught up, a read that found nothing is made again no sooner than this (seconds): the
# records of a shard that goes quiet are not polled for faster than its idle pace.
LOOK_AGAIN_S = 0.2


class Pages(Settling):
    """The part of ShardWorker that reads and applies pages (its state is set there)."""

    source: StreamSource
    process: Process
    stop: threading.Event | None
    _trip_s: float

    def _page(self, cursor: Cursor) -> Page | None:
        try:
            if cursor.iterator is None:
                cursor.iterator = self.source.iterator(
                    self.shard.stream_arn, self.shard.shard_id, cursor.position
                )
            cursor.read_at = self.clock.elapsed()
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
        """Settle the oldest page of ``cursor`` in flight, once the pages after it are
        read and started (up to ``IN_FLIGHT`` in all), or it ended while the cursor waited
        to read the next."""
        flights = list(cursor.inflight)
        cursor.inflight = ()
        read = 0
        if not flights:
            first, read = self._first_flight(cursor)
            if first is None:
                return 0
            flights.append(first)
        known = len(flights)
        ahead: Page | None = None
        ahead_failed = False
        try:
            ahead, ahead_failed = self._fill(cursor, flights)
            failed = self._complete(cursor, flights[0])
        except StoppedPageError:
            # The shard stopped before its writes started: none of these pages writes on.
            for unsettled in flights:
                self._discard(unsettled)
            cursor.iterator = None  # read again from the last checkpoint (if it resumes)
            return read + sum(len(f.records) for f in flights[known:])
        except BaseException:
            # Nothing of any page may run on unseen: wait for them all, read them again.
            for unsettled in flights:
                self._discard(unsettled)
            cursor.iterator = None  # read again from the last checkpoint
            raise
        read += sum(len(f.records) for f in flights[known:])
        rest = flights[1:]
        if failed:
            for later in rest:
                later.finish_quietly()  # nothing of them may overlap a split cursor's retry
        self._carry(cursor, flights[0], rest, ahead, ahead_failed)
        return read

    def _fill(self, cursor: Cursor, flights: list[Flight]) -> tuple[Page | None, bool]:
        """Read pages after ``flights`` and start them (appended), up to ``IN_FLIGHT``, or
        until the oldest ended while the cursor waited to read; the last read-ahead's page
        (None: no read, or it failed) and whether it failed."""
        ahead: Page | None = None
        found = True  # the last read found records
        while len(flights) < IN_FLIGHT and not self._stopping():
            # Behind: the next page is there already, read it at once.
            due = found and flights[-1].behind
            if not due and not self._wait_to_read(cursor, flights[0], found):
                break
            page, failed = self._read_ahead(cursor, flights[-1])
            if failed:
                return None, True
            if page is None:
                break  # none to read ahead now
            ahead = page
            if not ahead.records:
                if ahead.next_iterator is None:
                    break  # a closed shard's end: found once the pages in flight settled
                # Nothing yet: look again from after it, without waiting for the pages
                # in flight (a lone page's round trip would hold up every record behind).
                # The backlog is noted when the oldest settles, with its errors: noted
                # here, status would call a target stuck before it can say why.
                cursor.iterator = ahead.next_iterator
                found = False
                continue
            found = True
            flights.append(self._launch(cursor, ahead, after=list(flights)))
        return ahead, False

    def _wait_to_read(self, cursor: Cursor, head: Flight, found: bool) -> bool:
        """Caught up: until the next read is due, ``READ_CADENCE`` of a round trip after
        the last (``LOOK_AGAIN_S`` at least after one that found nothing); False when
        ``head`` (the oldest page in flight) ended first, or the clock let no time go by
        (a test's: the wait would spin), to settle it first."""
        gap = defaults.READ_CADENCE * self._trip_s
        if not found:
            gap = max(gap, LOOK_AGAIN_S)
        due = cursor.read_at + gap
        left = due - self.clock.elapsed()
        if left <= 0:
            return True
        if head.wait_ended(self.clock, left):
            return False
        # A clock that lets less than half the wait go by lets the cursor poll an empty
        # shard without end.
        return self.clock.elapsed() >= due - left / 2

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

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

    def _launch(self, cursor: Cursor, page: Page, after: Sequence[Flight] = ()) -> Flight:
        """Start applying ``page`` to the cursor's targets, its writes after those of
        ``after`` (the cursor's pages before it still in flight); the cursor reads on
        after it."""
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

        def run(written: Callable[[], None], ready: Callable[[], None]) -> BatchResult:
            return self.process(
                self.shard.table,
                kept,
                targets,
                logged=self.once.logged,
                written=written,
                ready=ready,
            )

        name = f"page-{self.shard.shard_id}"
        return Flight.launch(
            page,
            targets,
            run,
            name,
            behind=behind,
            after=after,
            stop=self.stop,
            clock=self.clock,
        )

    def _cut_short(self, page: Page) -> bool:
        """Was ``page``, short of its limit, cut by GetRecords' 1 MB in a backlog? Its last
        record is older than ``BEHIND_SECONDS`` (a caught-up shard's records are younger)."""
        age = batch_ages(page.records, self.clock.now(), self.fields).stream
        return age is not None and age >= BEHIND_SECONDS

    def _read_ahead(self, cursor: Cursor, flight: Flight) -> tuple[Page | None, bool]:
        """The page after ``flight`` (the cursor's last in flight), read while it is
        applied; (None, True) when the read failed (the next step reads again: after the
        last page in flight, from a new iterator, or from the checkpoint once none is).
        Only when the cursor is the only one moving: cursors that move side by side must
        be able to merge."""
        if flight.page.next_iterator is None or cursor.failures:
            return None, False
        if any(other.failures == 0 for other in self.cursors if other is not cursor):
            return None, False
        try:
            if cursor.iterator is None:  # the read after it failed: after its last record
                last = str(flight.records[-1]["dynamodb"]["SequenceNumber"])
                cursor.iterator = self.source.iterator(
                    self.shard.stream_arn, self.shard.shard_id, last
                )
            cursor.read_at = self.clock.elapsed()
            return self.source.read(cursor.iterator, cursor.size.limit), False
        except ReplicatorError:
            return None, True

    def _complete(self, cursor: Cursor, flight: Flight) -> bool:
        """Settle ``flight``'s result; True when a target failed in it."""
        result = flight.result()
        took = [t for t in (flight.reads_s, flight.writes_s) if t is not None]
        if took:
            self._trip_s = max(took)
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
        rest: Sequence[Flight],
        ahead: Page | None,
        ahead_failed: bool,
    ) -> None:
        """After ``flight`` settled: keep the pages after it in flight (``rest``, in
        order), or finish."""
        healthy = cursor in self.cursors and cursor.failures == 0
        if rest:
            if healthy:
                cursor.inflight = tuple(rest)
                if ahead_failed:
                    cursor.iterator = None  # a new one after them, at the next read
                # A closed shard's empty end after them: the next read is from the same
                # iterator (the end is found once they settled).
                return
            for later in rest:
                self._discard(later)
            cursor.iterator = None  # read the discarded pages again, from the checkpoint
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
        still allows it. A page after one that failed is only waited for (replayed)."""
        for cursor in list(self.cursors):
            flights, cursor.inflight = cursor.inflight, ()
            settled = True
            for flight in flights:
                if not settled or cursor not in self.cursors or cursor.failures:
                    self._discard(flight)
                    cursor.iterator = None  # read it again, from the checkpoint
                    continue
                try:
                    settled = not self._complete(cursor, flight)
                except StoppedPageError:
                    settled = False  # its writes never started: replayed, nothing to say
                    cursor.iterator = None
                except Exception as exc:
                    settled = False
                    cursor.iterator = None
                    log.warning(
                        "page in flight not checkpointed; it is replayed",
                        extra={"shard": str(self.shard), "reason": str(exc)},
                    )
