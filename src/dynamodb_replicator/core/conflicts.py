"""Conflicts: changes that lost, or won over a version their source never saw. Pure.

A replicated write meets one of three things in a region:

* the version its source replaced, or an older one the region has not caught up from:
  the normal case, nothing to report;
* a newer version (or a newer delete): the change **lost** (the write was stale);
* a version newer than the one the source replaced, but older than the change: a
  concurrent write in another region that this change **won** over (and overwrote).

The source region itself can lose too: an application write older than the version it
replaced (a clock behind), or an insert older than a delete the region remembers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.codec import item_to_json
from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.policy import ConflictPolicy, newer

__all__ = ["Conflict", "ConflictOutcome", "conflict_record", "overwrote_concurrent"]


class ConflictOutcome(enum.Enum):
    LOST = "lost"  # the change was not applied: the region holds a newer version
    WON = "won"  # the change replaced a concurrent version its source never saw


@dataclass(frozen=True, slots=True)
class Conflict:
    """One change meeting another version of its item in ``region``.

    ``other`` is the version the region held (None: an item without ``__timestamp``);
    ``other_deleted`` says it was a remembered delete. The items are kept for callers that
    opt in to logging contents; they are never part of the comparison.
    """

    outcome: ConflictOutcome
    key: ItemKey
    region: str
    operation: str  # "put" or "delete"
    change: Version
    other: Version | None
    sequence_number: str
    other_deleted: bool = False
    change_item: Item | None = field(default=None, compare=False, repr=False)
    other_item: Item | None = field(default=None, compare=False, repr=False)


def overwrote_concurrent(
    policy: ConflictPolicy, held: Version | None, incoming: Version, replaced: Version | None
) -> bool:
    """Did writing ``incoming`` over ``held`` overwrite a concurrent version?

    ``replaced`` is the version the change replaced in its source (None for an insert).
    ``held`` is concurrent when the source never saw it: newer than what the source
    replaced. An older ``held`` is a region lagging behind the source, not a conflict.
    """
    if held is None or held == incoming:
        return False
    return replaced is None or newer(policy, held, replaced)


def _version(version: Version | None) -> dict[str, str] | None:
    if version is None:
        return None
    return {"timestamp": version.raw_timestamp or str(version.timestamp), "origin": version.origin}


def conflict_record(
    conflict: Conflict,
    *,
    table: str,
    source: str,
    at: float,
    include_items: bool = False,
) -> dict[str, Any]:
    """The conflict log's JSON object (one line per conflict).

    Keys are logged (they identify the item); attribute values only with ``include_items``.
    """
    winner = "change" if conflict.outcome is ConflictOutcome.WON else "other"
    record: dict[str, Any] = {
        "at": round(at, 3),
        "table": table,
        "outcome": conflict.outcome.value,
        "winner": winner,
        "region": conflict.region,
        "source": source,
        "operation": conflict.operation,
        "key": item_to_json(conflict.key.to_attributes()),
        "sequence": conflict.sequence_number,
        "change": _version(conflict.change),
        "other": _version(conflict.other),
        "other_deleted": conflict.other_deleted,
    }
    if include_items:
        record["change_item"] = _item(conflict.change_item)
        record["other_item"] = _item(conflict.other_item)
    return record


def _item(item: Item | None) -> dict[str, Any] | None:
    return None if item is None else item_to_json(item)
