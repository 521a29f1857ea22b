"""Where each target stands in one shard, and which records are known to lie beyond.

Backlog comes from stream positions, never from how much each reader read: the shard's
newest known SequenceNumber (the furthest checkpoint, or the furthest record any reader
read) against each target's checkpoint. A target whose checkpoint is behind the newest
has a backlog, whatever the other targets do; one at the newest has none, however little it
read itself (a target seeded at an older position reads more, not the others).

The count is exact for the records read beyond the furthest checkpoint found at start; a
target further behind (or a shard read by a full page) shows the count as a lower bound.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from dynamodb_replicator.core.streams import END

__all__ = ["SEEN_LIMIT", "ShardPositions"]

SEEN_LIMIT = 100_000
"""Sequence numbers remembered beyond the slowest target: a few MB per shard at most."""


class ShardPositions:
    """Checkpoints per target, the newest known position, and the records read beyond."""

    def __init__(self, saved: Mapping[str, str], *, limit: int = SEEN_LIMIT) -> None:
        self.limit = limit
        self.checkpoint: dict[str, int] = {
            target: int(seq) for target, seq in saved.items() if seq != END
        }
        self.newest: int | None = max(self.checkpoint.values(), default=None)
        # Every record above ``complete_from`` that exists was read (-1: the whole shard).
        self.complete_from = -1 if self.newest is None else self.newest
        self.full_page = False  # the newest read was a full page: more records wait
        self._seen: list[int] = []  # sorted: records read above complete_from

    def read(self, sequences: Iterable[str], *, full: bool) -> None:
        """A reader read these records (in order); ``full``: its page was full."""
        reached = False
        for raw in sequences:
            seq = int(raw)
            if self.newest is None or seq > self.newest:
                self._seen.append(seq)
                self.newest = seq
            reached = reached or seq >= (self.newest or 0)
        if reached:
            self.full_page = full
        if len(self._seen) > self.limit:
            drop = len(self._seen) - self.limit // 2
            self.complete_from = self._seen[drop - 1]
            del self._seen[:drop]

    def moved(self, target: str, sequence: str) -> None:
        """``target``'s checkpoint is now ``sequence``."""
        self.checkpoint[target] = int(sequence)

    def prune(self, active: Iterable[str]) -> None:
        """Forget records every target in ``active`` is past."""
        slowest = min((self.checkpoint.get(t, -1) for t in active), default=None)
        if slowest is None:
            self._seen.clear()
            return
        del self._seen[: bisect.bisect_right(self._seen, slowest)]

    def backlog(self, target: str) -> tuple[int, bool]:
        """(records known beyond ``target``'s checkpoint, whether more may wait)."""
        position = self.checkpoint.get(target, -1)
        if self.newest is None or position >= self.newest:
            return 0, self.full_page
        known = len(self._seen) - bisect.bisect_right(self._seen, position)
        return max(known, 1), self.full_page or position < self.complete_from
