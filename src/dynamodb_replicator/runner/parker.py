"""A shard worker's parking: which records it parked for which targets, and parking one.

A record is parked for the targets whose failure on it ``PoisonWatch`` finds due, or at
once when the same key was parked for that target already, the same way (one bad item
written four times parks four times, but waits once); from then on the worker leaves it
out of what it sends those targets, so the shard moves on. Parking
writes the whole record first: when that write fails, nothing is skipped (it is retried).

"Parked already" is read from the lot, not only remembered: a restarted runner, the worker
that takes a lease over, or a child shard's worker parks a parked key's next bad version at
once too. The worker reads the lot once, at its first poison failure: what it parks itself
from then on it remembers, and the key's earlier versions were parked before it started (a
key stays in one shard; a child shard is read after its parent is finished).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.codec import key_to_json, record_to_lambda_event_record
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.parking import ParkedRecord, ParkingLot, PoisonWatch, is_poison
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.streams import ShardRef

__all__ = ["Failures", "Parker"]

log = logging.getLogger(__name__)

# target -> (the SequenceNumber it failed at, why)
Failures = Mapping[str, tuple[str, ReplicatorError | None]]


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _key_text(record: Mapping[str, Any]) -> str:
    try:
        return key_to_json(record["dynamodb"]["Keys"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def _event(record: Mapping[str, Any], shard: ShardRef, region: str) -> Mapping[str, Any]:
    try:
        return record_to_lambda_event_record(
            record, event_source_arn=shard.stream_arn, aws_region=region
        )
    except (KeyError, TypeError, ValueError, AttributeError, ReplicatorError):
        # Malformed beyond the Lambda form: kept as it came, every value as text.
        kept: Mapping[str, Any] = json.loads(json.dumps(record, default=str))
        return kept


class Parker:
    """Parks one shard's poison records (``lot`` None: never parks)."""

    def __init__(
        self,
        shard: ShardRef,
        region: str,
        lot: ParkingLot | None,
        watch: PoisonWatch,
        stats: Any,
        *,
        clock: Clock,
    ) -> None:
        self.shard = shard
        self.region = region
        self.lot = lot
        self.watch = watch
        self.stats = stats  # the worker's ShardStats (counters per target)
        self.clock = clock
        self.skip: dict[str, set[str]] = {}  # target -> parked sequences not yet passed
        self._targets: dict[str, set[str]] = {}  # sequence -> every target it is parked for
        self._parked_keys: set[tuple[str, str, str]] = set()  # (target, key text, error kind)
        self._lot_read = False  # what earlier runs parked is in ``_parked_keys``

    def kept(
        self, records: Sequence[Mapping[str, Any]], targets: Collection[str]
    ) -> list[Mapping[str, Any]]:
        """``records`` without those parked for every one of ``targets``."""
        if not all(self.skip.get(t) for t in targets):
            return list(records)  # a target with nothing parked keeps every record
        return [
            r for r in records if not all(_sequence(r) in self.skip.get(t, ()) for t in targets)
        ]

    def passed(self, target: str, position: str) -> None:
        """``target`` is checkpointed at ``position``: forget what it parked before."""
        self.watch.clear(target)
        left = {s for s in self.skip.get(target, ()) if int(s) > int(position)}
        if left:
            self.skip[target] = left
        else:
            self.skip.pop(target, None)

    def check(self, records: Sequence[Mapping[str, Any]], failures: Failures) -> set[str]:
        """Park the records whose failures are due; the targets that moved on."""
        if self.lot is None or not failures:
            return set()
        now = self.clock.now()
        due: dict[str, set[str]] = {}
        by_sequence = {_sequence(r): r for r in records}
        for target, (sequence, error) in failures.items():
            waited = self.watch.failed(target, sequence, error, now)
            if waited or self._parked_before(target, by_sequence.get(sequence), error):
                due.setdefault(sequence, set()).add(target)
        moved: set[str] = set()
        for sequence, targets in due.items():
            record = by_sequence.get(sequence)
            error = failures[min(targets)][1]
            if record is not None and self._park(record, targets, error, now):
                moved |= targets
        return moved

    def _parked_before(
        self, target: str, record: Mapping[str, Any] | None, error: ReplicatorError | None
    ) -> bool:
        """Was ``record``'s key parked for ``target`` already, failing the same way?"""
        if record is None or not is_poison(error):
            return False
        key = _key_text(record)
        if not key:
            return False
        if not self._lot_read:
            self._remember_lot()
        return (target, key, type(error).__name__) in self._parked_keys

    def _remember_lot(self) -> None:
        """Learn what was parked for this table from this region, by any run of any
        worker: the lot outlives a restart."""
        assert self.lot is not None
        try:
            parked = self.lot.parked([self.shard.table])
        except ReplicatorError as exc:
            log.warning(
                "parked records not read (read again at the next failure): a record of a "
                "parked key waits park_after",
                extra={"shard": str(self.shard), "reason": str(exc)},
            )
            return
        self._lot_read = True
        for earlier in parked:
            if earlier.source == self.region and earlier.key and earlier.kind:
                self._parked_keys.update((t, earlier.key, earlier.kind) for t in earlier.targets)

    def _park(
        self,
        record: Mapping[str, Any],
        targets: set[str],
        error: ReplicatorError | None,
        now: float,
    ) -> bool:
        assert self.lot is not None
        reason = str(error)
        sequence = _sequence(record)
        every = self._targets.get(sequence, set()) | targets
        parked = ParkedRecord(
            table=self.shard.table,
            source=self.region,
            stream=self.shard.stream_label,
            shard_id=self.shard.shard_id,
            sequence=sequence,
            key=_key_text(record),
            targets=tuple(sorted(every)),
            reason=reason,
            parked_at=now,
            record=_event(record, self.shard, self.region),
            kind=type(error).__name__,
        )
        key = json.loads(parked.key) if parked.key else None  # an object in the log
        where = {"shard": str(self.shard), "sequence": sequence, "key": key}
        try:
            self.lot.park(parked)
        except ReplicatorError as exc:
            log.error("record not parked; it is retried", extra={**where, "reason": str(exc)})
            return False
        log.error(
            "record parked: replication moves on without it; fix the item in the source "
            "region, then run `dynamodb-replicator redrive`",
            extra={**where, "targets": sorted(targets), "reason": reason},
        )
        self._targets[sequence] = every
        for target in targets:
            if parked.key:
                self._parked_keys.add((target, parked.key, type(error).__name__))
            self.skip.setdefault(target, set()).add(sequence)
            self.watch.clear(target)
            before = self.stats.counters.get(target, PairCounters())
            self.stats.counters[target] = before + PairCounters(parked=1)
        return True
