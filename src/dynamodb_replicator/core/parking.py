"""Poison records: a record that fails by itself, the same way, for long enough is parked
(kept whole, with its key and the reason) so its shard moves on. Pure.

Only failures of the record itself count: a record that cannot be decoded (malformed, no
``__timestamp`` under ``missing_timestamp = "fail"``) or an item a region refuses
(ItemRejectedError: too large, invalid). A region that is down, throttles or denies access
fails every record alike: that is a stall, shown by ``status``, never a reason to park.
``dynamodb-replicator redrive`` replays parked records once they are fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynamodb_replicator.core.errors import (
    ItemRejectedError,
    RecordError,
    ReplicatorError,
    StreamViewTypeError,
)

__all__ = ["ParkedRecord", "ParkingLot", "PoisonWatch", "is_poison"]


def is_poison(error: ReplicatorError | None) -> bool:
    """Does ``error`` belong to the record (the same record fails the same way again)?"""
    if isinstance(error, StreamViewTypeError):
        return False  # the whole stream is wrong: every record would fail
    return isinstance(error, (RecordError, ItemRejectedError))


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """One parked stream record: ``record`` in the Lambda/JSON form (what a Lambda event
    holds), ``key`` as ``codec.key_to_json`` text ("" when the record has no readable key),
    ``targets`` the regions it did not reach, ``kind`` the failure's class name (a later
    version of the key failing that way parks at once, also after a restart: "" in records
    parked before it was kept, which then wait ``park_after`` again)."""

    table: str
    source: str
    stream: str  # the stream label (the end of its ARN)
    shard_id: str
    sequence: str
    key: str
    targets: tuple[str, ...]
    reason: str
    parked_at: float  # epoch seconds
    record: Mapping[str, Any] = field(compare=False, repr=False)
    kind: str = ""


class ParkingLot(Protocol):
    """Where parked records wait for ``redrive`` (the runner: its state table)."""

    def park(self, parked: ParkedRecord) -> None: ...

    def parked(self, tables: Sequence[str] | None = None) -> list[ParkedRecord]: ...

    def remove(self, parked: ParkedRecord) -> None: ...


@dataclass(slots=True)
class _Failing:
    sequence: str
    kind: str
    since: float


class PoisonWatch:
    """Per target: the record it fails on, and since when it fails that same way."""

    def __init__(self, park_after: float) -> None:
        self.park_after = park_after
        self._failing: dict[str, _Failing] = {}

    def failed(self, target: str, sequence: str, error: ReplicatorError | None, now: float) -> bool:
        """Note a failure; True when the record is due to be parked for ``target``."""
        if not is_poison(error):
            self._failing.pop(target, None)  # a stall, not poison: the clock starts anew
            return False
        kind = type(error).__name__
        seen = self._failing.get(target)
        if seen is None or seen.sequence != sequence or seen.kind != kind:
            self._failing[target] = seen = _Failing(sequence, kind, now)
        return now - seen.since >= self.park_after

    def clear(self, target: str) -> None:
        """``target`` moved on (accepted, or parked the record)."""
        self._failing.pop(target, None)
