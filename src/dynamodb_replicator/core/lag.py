"""How old the changes are that a region just applied. Pure: ``now`` is passed in.

Two clocks, both reported:

* the item's ``__timestamp`` (the application's clock at the write), when it looks like
  epoch milliseconds (the recommended form) or epoch seconds. Replica writes and deletes
  carry older versions' timestamps and are skipped;
* the stream record's ApproximateCreationDateTime (the server's clock). DynamoDB Streams
  give it to the second; DynamoDB Local truncates it to the minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dynamodb_replicator.core.model import SystemAttributes, parse_number
from dynamodb_replicator.core.policy import is_replica_write

__all__ = ["Ages", "batch_ages", "timestamp_seconds"]


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


def batch_ages(records: Sequence[Mapping[str, Any]], now: float, fields: SystemAttributes) -> Ages:
    """Ages of the newest application write and of the last record in ``records``."""
    stamp: float | None = None
    for record in reversed(records):
        image = record.get("dynamodb", {}).get("NewImage")
        old = record.get("dynamodb", {}).get("OldImage")
        if not image or is_replica_write(image, old, fields):
            continue
        raw = image.get(fields.timestamp, {}).get("N")
        stamp = timestamp_seconds(raw) if isinstance(raw, str) else None
        break
    created = _created(records[-1]) if records else None
    return Ages(
        None if stamp is None else max(0.0, now - stamp),
        None if created is None else max(0.0, now - created),
    )
