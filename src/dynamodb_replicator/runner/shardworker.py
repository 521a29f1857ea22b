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

import threading
from collections.abc import Iterable, Mapping, Sequence

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.parking import ParkingLot, PoisonWatch
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import (
    END,
    CheckpointStore,
    ShardRef,
    StreamSource,
)
from dynamodb_replicator.runner.count_once import CountOnce
from dynamodb_replicator.runner.page_size import PageSize
from dynamodb_replicator.runner.parker import Parker
from dynamodb_replicator.runner.positions import ShardPositions
from dynamodb_replicator.runner.shard_pages import Pages
from dynamodb_replicator.runner.shard_state import (
    Cursor,
    LagObserver,
    Process,
    ShardStats,
)

__all__ = ["Cursor", "LagObserver", "Process", "ShardStats", "ShardWorker"]


class ShardWorker(Pages):
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
        stop: threading.Event | None = None,
    ) -> None:
        self.fields = fields or SystemAttributes()
        # Set when the shard stops (runner/shard_thread.py): no page read ahead starts
        # its writes after it.
        self.stop = stop
        self._trip_s = 0.0  # the longer of the last settled page's reads and writes
        self.targets = tuple(targets)
        self.shard = shard
        self.source = source
        self.checkpoints = checkpoints
        self.process = process
        self.parent = parent
        self.clock = clock
        self.page_limit = page_limit  # each cursor's page: smaller after one ran out of time
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
            flights, cursor.inflight = cursor.inflight, ()
            for flight in flights:
                self._discard(flight)  # its writes end before this returns: none unseen
        self.waiting -= gone
        self.finished -= gone
        self.targets = tuple(t for t in self.targets if t not in gone)

    def _take_joining(self) -> None:
        with self._joining_lock:
            new = sorted(self._joining - set(self.targets))
        if new:
            # A target removed and added back while a page still writes it joins once
            # that page ended: a cursor of its own would write its keys beside it.
            writing = {
                t for c in self.cursors for f in c.inflight if not f.ended for t in f.targets
            }
            new = [t for t in new if t not in writing]
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
            if cursor.position == position and cursor.failures == 0 and not cursor.inflight:
                cursor.targets.add(target)
                return
        self.cursors.append(Cursor({target}, position, PageSize(self.page_limit)))

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

    def _merge(self) -> None:
        by_position: dict[str | None, Cursor] = {}
        for cursor in list(self.cursors):
            if cursor.inflight:
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
            if drop.size.limit < keep.size.limit:  # the smaller one: a target in it missed
                keep.size = drop.size
            self.cursors.remove(drop)
            by_position[cursor.position] = keep
