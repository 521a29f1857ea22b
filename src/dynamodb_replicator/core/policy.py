"""Conflict rules: which version of an item wins, as pure order and as DynamoDB conditions.

A policy gives two views of one total order on versions:

* ``order_key(version)``: a sortable key, for pure code (planning, diff, repair, tests);
* ``stored_is_older(incoming, holder, strict)``: a condition tree that is true when the item
  stored in region ``holder`` must give way to ``incoming``. Conditional writes use it, so
  DynamoDB decides atomically.

The stored item's version is derived from its attributes: ``__timestamp`` and, when the
replica marker matches that timestamp, ``__originRegion``; otherwise the item was written
by an application in ``holder`` itself. An item with no usable ``__timestamp`` is older
than every versioned one.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from dynamodb_replicator.core.conditions import (
    AttributeType,
    Compare,
    Condition,
    Const,
    Exists,
    Path,
    Value,
    all_of,
    any_of,
    negate,
)
from dynamodb_replicator.core.model import Item, SystemAttributes, Version, parse_number

__all__ = [
    "ConflictPolicy",
    "LastWriterWins",
    "PreferredRegion",
    "is_replica_write",
    "newer",
    "stored_is_unversioned",
    "stored_version",
    "would_apply",
]


class ConflictPolicy(Protocol):
    """A total order on versions, in pure and in DynamoDB-condition form."""

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        """Sort key: a larger key wins; equal keys are the same version."""
        ...

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        """True when the item stored in ``holder`` is absent, unversioned or older than
        ``incoming``; with ``strict=False`` also when it is the same version."""
        ...


def is_replica_write(item: Item, fields: SystemAttributes) -> bool:
    """A replica write carries a marker equal to its current ``__timestamp``."""
    marker, stamp = item.get(fields.marker), item.get(fields.timestamp)
    if marker is None or stamp is None or "N" not in marker or "N" not in stamp:
        return False
    a, b = parse_number(marker["N"]), parse_number(stamp["N"])
    return a is not None and a == b and "S" in item.get(fields.origin, {})


def stored_version(item: Item | None, holder: str, fields: SystemAttributes) -> Version | None:
    """The version of an item as stored in region ``holder``; None when unversioned."""
    if item is None:
        return None
    stamp = item.get(fields.timestamp)
    if stamp is None or "N" not in stamp or parse_number(stamp["N"]) is None:
        return None
    origin = str(item[fields.origin]["S"]) if is_replica_write(item, fields) else holder
    return Version.of(stamp["N"], origin)


def newer(policy: ConflictPolicy, a: Version | None, b: Version | None) -> bool:
    """True when ``a`` is strictly newer than ``b`` (None is older than everything)."""
    if a is None:
        return False
    return b is None or policy.order_key(a) > policy.order_key(b)


def would_apply(
    policy: ConflictPolicy, incoming: Version, stored: Version | None, *, strict: bool
) -> bool:
    """The pure twin of ``stored_is_older``: would a write of ``incoming`` replace ``stored``?"""
    if stored is None:
        return True
    a, b = policy.order_key(stored), policy.order_key(incoming)
    return a < b or (not strict and a == b)


def stored_is_unversioned(fields: SystemAttributes, key_attribute: str) -> Condition:
    """True when an item is stored (``key_attribute`` is one of its key attributes) and has
    no usable ``__timestamp``."""
    return all_of(Exists(Path(key_attribute)), _StoredItem(fields).unversioned())


def _compare_strings(a: str, operator: str, b: str) -> bool:
    return {"<": a < b, "<=": a <= b, "=": a == b}[operator]


@dataclass(frozen=True, slots=True)
class _StoredItem:
    """Condition building blocks that read the stored item's version."""

    fields: SystemAttributes

    def unversioned(self) -> Condition:
        return negate(AttributeType(Path(self.fields.timestamp), "N"))

    def timestamp(self, operator: str, incoming: Version) -> Condition:
        return Compare(Path(self.fields.timestamp), operator, Value({"N": incoming.raw_timestamp}))

    def origin(self, operator: str, region: str, holder: str) -> Condition:
        marked = Compare(Path(self.fields.marker), "=", Path(self.fields.timestamp))
        return any_of(
            all_of(marked, Compare(Path(self.fields.origin), operator, Value({"S": region}))),
            all_of(negate(marked), Const(_compare_strings(holder, operator, region))),
        )


@dataclass(frozen=True, slots=True)
class LastWriterWins:
    """The default: the larger ``__timestamp`` wins; on a tie, the larger origin region name."""

    fields: SystemAttributes = field(default_factory=SystemAttributes)

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        return (version.timestamp, version.origin)

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        stored = _StoredItem(self.fields)
        return any_of(
            stored.unversioned(),
            stored.timestamp("<", incoming),
            all_of(
                stored.timestamp("=", incoming),
                stored.origin("<" if strict else "<=", incoming.origin, holder),
            ),
        )


@dataclass(frozen=True, slots=True)
class PreferredRegion:
    """Versions that originated in ``region`` beat all others; otherwise last writer wins.

    An example of a custom policy (see the README): the pure key and the condition tree
    describe the same order.
    """

    region: str
    fields: SystemAttributes = field(default_factory=SystemAttributes)

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        return (version.origin == self.region, version.timestamp, version.origin)

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        stored = _StoredItem(self.fields)
        stored_preferred = stored.origin("=", self.region, holder)
        by_time = LastWriterWins(self.fields).stored_is_older(incoming, holder, strict=strict)
        if incoming.origin == self.region:
            same_class: Condition = stored_preferred
            other_class: Condition = negate(stored_preferred)
        else:
            same_class, other_class = negate(stored_preferred), Const(False)
        return any_of(stored.unversioned(), other_class, all_of(same_class, by_time))
