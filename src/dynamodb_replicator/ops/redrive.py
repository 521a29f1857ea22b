"""``redrive``: replay parked records (the runner's) and captured batches (the Lambda's
failure store) through the same ``Replicator`` the stream goes through.

Replaying is safe in any order and as often as wanted: the apply rule keeps the newest
version everywhere, so a record older than what a region holds is only counted stale. A
parked record that still cannot be replicated as it is (say, no ``__timestamp``) is
replaced by the item as its source region holds it now: once the item was fixed there,
that version is replayed. A replay that reached every target is removed from its store.
Of the parked records of one key (one bad item written several times) only the newest is
replayed (``newest_per_key``): the older ones are superseded, and removed with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.codec import item_to_json, key_from_json
from dynamodb_replicator.core.errors import RecordError, ReplicatorError
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.replicator import BatchResult, Replicator

__all__ = ["RedriveSummary", "Replay", "current_record", "newest_per_key", "redrive"]

log = logging.getLogger(__name__)

# (table, source region, key as codec.key_to_json text) -> the item the source holds now
ReadItem = Callable[[str, str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Replay:
    """Records to replay (Lambda/JSON form) of one table's stream in ``source``.

    ``targets`` None: every region. ``key`` (one parked record): the key to read the
    item again when the record itself still fails. ``remove``: called once every record
    reached every target."""

    label: str
    table: str
    source: str
    records: Sequence[Mapping[str, Any]]
    targets: tuple[str, ...] | None = None
    key: str = ""
    remove: Callable[[], None] | None = field(default=None, compare=False)
    removes: int = 1  # entries ``remove`` takes from the store (superseded ones too)


def newest_per_key(
    parked: Iterable[ParkedRecord],
) -> list[tuple[ParkedRecord, tuple[ParkedRecord, ...]]]:
    """Per table, source region and key: the newest parked record (the largest sequence
    number) and the older ones it supersedes. A record without a readable key stands alone.
    In the order of each key's first parked record."""
    groups: dict[tuple[str, str, str], list[ParkedRecord]] = {}
    alone: list[ParkedRecord] = []
    for record in parked:
        if record.key:
            groups.setdefault((record.table, record.source, record.key), []).append(record)
        else:
            alone.append(record)
    newest = []
    for records in groups.values():
        ordered = sorted(records, key=lambda r: int(r.sequence))
        newest.append((ordered[-1], tuple(ordered[:-1])))
    return newest + [(record, ()) for record in alone]


@dataclass(slots=True)
class RedriveSummary:
    replayed: int = 0  # replays that reached every target
    records: int = 0
    applied: int = 0
    stale: int = 0
    removed: int = 0
    failed: list[tuple[Replay, str]] = field(default_factory=list)  # what still fails, why

    def lines(self, *, dry_run: bool) -> list[str]:
        verb = "would replay" if dry_run else "replayed"
        head = (
            f"{verb} {self.replayed} of {self.replayed + len(self.failed)} ({self.records} records"
        )
        if not dry_run:
            head += f"; applied {self.applied}, already there {self.stale}; "
            head += f"removed {self.removed} from their store"
        return [head + ")", *(f"still failing: {r.label}: {why}" for r, why in self.failed)]


def current_record(
    replay: Replay, read: ReadItem, fields_timestamp: str
) -> Mapping[str, Any] | None:
    """The parked record's item as its source holds it now, as an INSERT record (None:
    the item is gone, or still has no ``__timestamp``)."""
    if not replay.key or len(replay.records) != 1:
        return None
    item = read(replay.table, replay.source, replay.key)
    if item is None or fields_timestamp not in item:
        return None
    sequence = replay.records[0].get("dynamodb", {}).get("SequenceNumber", "0")
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": item_to_json(key_from_json(replay.key)),
            "NewImage": item_to_json(item),
            "SequenceNumber": str(sequence),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def _failure(result: BatchResult, targets: Iterable[str]) -> str | None:
    for failure in result.record_failures:
        return str(failure.error)
    for target in targets:
        outcome = result.targets.get(target)
        if outcome is not None and outcome.failed_sequence is not None:
            return f"{target}: {outcome.error}"
    return None


def _replay(
    replay: Replay, replicator: Replicator, read: ReadItem
) -> tuple[BatchResult | None, str | None]:
    targets = replay.targets or tuple(replicator.writers)
    try:
        result = replicator.process(replay.table, replay.records, from_json=True, regions=targets)
    except ReplicatorError as exc:
        return None, str(exc)
    why = _failure(result, targets)
    if why is None or not all(isinstance(f.error, RecordError) for f in result.record_failures):
        return result, why
    fixed = current_record(replay, read, replicator.fields.timestamp)
    if fixed is None:
        return result, f"{why} (fix the item in {replay.source}, then redrive again)"
    result = replicator.process(replay.table, [fixed], from_json=True, regions=targets)
    return result, _failure(result, targets)


def redrive(
    replays: Iterable[Replay],
    replicators: Mapping[str, Replicator],
    read: ReadItem,
    *,
    dry_run: bool = False,
) -> RedriveSummary:
    """Replay each of ``replays`` with its source region's replicator; remove those that
    reached every target. ``dry_run``: only count what would be replayed."""
    summary = RedriveSummary()
    for replay in replays:
        summary.records += len(replay.records)
        if dry_run:
            summary.replayed += 1
            continue
        result, why = _replay(replay, replicators[replay.source], read)
        for outcome in result.targets.values() if result else ():
            summary.applied += outcome.applied
            summary.stale += outcome.stale
        if why is not None:
            summary.failed.append((replay, why))
            continue
        summary.replayed += 1
        if replay.remove is not None:
            replay.remove()
            summary.removed += replay.removes
    return summary
