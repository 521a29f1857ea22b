"""How old the changes are that a region just applied. Pure: ``now`` is passed in.

Two figures, both reported:

* lag: the age of the newest application write of a batch. Its time is the item's
  ``__timestamp`` (epoch milliseconds, the recommended form, or epoch seconds) only where
  the stream record's ApproximateCreationDateTime confirms it: within that field's
  granularity. A version is not a clock reading (items versioned by ``version-items``,
  clocks that are off, seconds taken for milliseconds): otherwise the stream record's
  time rules. Replica writes and deletes carry older versions' timestamps and are skipped;
* stream age: the age of the batch's last record by its ApproximateCreationDateTime (the
  server's clock). DynamoDB Streams give it to the second; DynamoDB Local truncates it to
  the minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dynamodb_replicator.core.model import SystemAttributes, parse_number
from dynamodb_replicator.core.policy import is_replica_write

__all__ = ["Ages", "batch_ages", "timestamp_seconds", "write_time"]


def timestamp_seconds(raw: str) -> float | None:
    """``__timestamp`` as epoch seconds when it is epoch ms or s of this era, else None."""
    value = parse_number(raw)
    if value is None:
        return None
    if 10**12 < value < 10**14:
        return float(value) / 1000
    if 10**9 < value < 10**11:
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class Ages:
    """Seconds between the newest change of a batch and ``now``; None when unknown."""

    timestamp: float | None = None
    stream: float | None = None


def _created(record: Mapping[str, Any]) -> float | None:
    created = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        return created.timestamp()
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return float(created)
    return None


def _granularity(created: float) -> float:
    """How coarse ApproximateCreationDateTime is: seconds on AWS, minutes on DynamoDB Local
    (a time on a whole minute may be either; the wider window is taken)."""
    return 60.0 if created % 60 == 0 else 1.0


def write_time(stamp: float | None, created: float | None) -> float | None:
    """When a write happened: ``stamp`` (its ``__timestamp`` in seconds) where the stream
    record's time ``created`` confirms it, within ``created``'s granularity either side
    (truncation and a little clock skew); else ``created``."""
    if created is None:
        return None
    step = _granularity(created)
    if stamp is not None and created - step <= stamp < created + step:
        return stamp
    return created


def _application_write(record: Mapping[str, Any], fields: SystemAttributes) -> bool:
    body = record.get("dynamodb", {})
    image = body.get("NewImage")
    return bool(image) and not is_replica_write(image, body.get("OldImage"), fields)


def batch_ages(records: Sequence[Mapping[str, Any]], now: float, fields: SystemAttributes) -> Ages:
    """Ages of the newest application write and of the last record in ``records``."""
    written: float | None = None
    for record in reversed(records):
        if not _application_write(record, fields):
            continue
        raw = record["dynamodb"]["NewImage"].get(fields.timestamp, {}).get("N")
        stamp = timestamp_seconds(raw) if isinstance(raw, str) else None
        written = write_time(stamp, _created(record))
        break
    created = _created(records[-1]) if records else None
    return Ages(
        None if written is None else max(0.0, now - written),
        None if created is None else max(0.0, now - created),
    )
