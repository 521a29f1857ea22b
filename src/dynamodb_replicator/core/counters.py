"""What replication did for one (source, target) pair, counted: one record from the shard
worker to the reports, ``status``, the runner's metrics and the Lambda's EMF lines. Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dynamodb_replicator.core.conflicts import ConflictOutcome
from dynamodb_replicator.core.contract import ViolationKind
from dynamodb_replicator.core.replicator import BatchResult

__all__ = ["PairCounters"]


@dataclass(frozen=True, slots=True)
class PairCounters:
    """Counts of changes for one target: ``applied``; ``stale`` (rejected as older than what
    the target holds); ``failed`` (gave up after their retries); ``retried`` (write attempts
    retried); conflicts that ``lost`` or ``won`` over a concurrent version; records ``parked``
    (core/parking.py) instead of applied; for residency (core/scoping.py), puts ``refused``
    (the item may not live in the target: a delete of its version went instead) and, in the
    source, writes ``removed`` because they were made outside their scope."""

    applied: int = 0
    stale: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    won: int = 0
    parked: int = 0
    refused: int = 0
    removed: int = 0

    @classmethod
    def of(cls, result: BatchResult, target: str, counted: Collection[str] = ()) -> PairCounters:
        """What one batch did for ``target``, leaving out the records of ``counted``
        (SequenceNumbers an earlier attempt of the same records counted already)."""
        outcome = result.targets.get(target)
        failed = result.failed_count(target)
        if outcome is None:
            return cls(failed=failed)
        applied, stale = outcome.applied, outcome.stale
        conflicts = outcome.conflicts
        if counted:
            again = [applied for seq, applied in outcome.settled.items() if seq in counted]
            applied -= sum(again)
            stale -= len(again) - sum(again)
            conflicts = tuple(c for c in conflicts if c.sequence_number not in counted)
        lost = sum(c.outcome is ConflictOutcome.LOST for c in conflicts)
        won = len(conflicts) - lost
        refused = [s for s in result.refused.get(target, ()) if s not in counted]
        removed = [
            v.sequence_number
            for v in result.violations
            if v.kind is ViolationKind.OUTSIDE_SCOPE and v.region == target
        ]
        removed = [s for s in removed if s not in counted]
        return cls(
            applied, stale, failed, outcome.retried, lost, won, 0, len(refused), len(removed)
        )

    def __add__(self, other: PairCounters) -> PairCounters:
        return PairCounters(
            self.applied + other.applied,
            self.stale + other.stale,
            self.failed + other.failed,
            self.retried + other.retried,
            self.lost + other.lost,
            self.won + other.won,
            self.parked + other.parked,
            self.refused + other.refused,
            self.removed + other.removed,
        )
