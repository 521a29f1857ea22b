"""Count once: a page replayed after a failure is counted and logged only for what no
earlier attempt counted or logged (applied, stale, conflicts).

Per target it remembers the SequenceNumbers whose outcome was counted, and the conflicts
logged, until every target is checkpointed past them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.replicator import BatchResult

__all__ = ["CountOnce"]


class CountOnce:
    """What one shard worker counted and logged beyond its targets' checkpoints."""

    def __init__(self, targets: Collection[str]) -> None:
        self.counted: dict[str, set[str]] = {t: set() for t in targets}
        self.conflicts: set[Conflict] = set()

    def logged(self, conflict: Conflict) -> bool:
        """Was ``conflict`` logged by an earlier attempt (``Replicator.process(logged=)``)?"""
        return conflict in self.conflicts

    def count(self, target: str, result: BatchResult) -> PairCounters:
        """What ``result`` adds for ``target``; its outcomes are remembered as counted."""
        seen = self.counted.setdefault(target, set())
        counted = PairCounters.of(result, target, seen)
        outcome = result.targets.get(target)
        if outcome is not None:
            seen.update(outcome.settled)
        return counted

    def logged_all(self, result: BatchResult) -> None:
        """Every conflict of ``result`` is logged now."""
        self.conflicts.update(result.conflicts())

    def forget(self, checkpoints: Mapping[str, int], active: Collection[str]) -> None:
        """Drop what every target is checkpointed past."""
        for target, seen in self.counted.items():
            at = checkpoints.get(target)
            if at is not None and seen:
                self.counted[target] = {s for s in seen if int(s) > at}
        slowest = min((checkpoints.get(t, -1) for t in active), default=None)
        if slowest is not None:
            self.conflicts = {c for c in self.conflicts if int(c.sequence_number) > slowest}
