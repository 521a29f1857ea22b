"""Conflict rules: which version of an item wins, as pure order and as DynamoDB conditions.

A policy gives two views of one total order on versions:

* ``order_key(version)``: a sortable key, for pure code (planning, diff, repair, tests);
* ``stored_is_older(incoming, holder, strict)``: a condition tree that is true when the item
  stored in region ``holder`` must give way to ``incoming``. Conditional writes use it, so
  DynamoDB decides atomically.

The stored item's version is derived from its attributes: ``__timestamp`` and, when the
replica marker matches that timestamp and an origin is stored (replica content, as
``is_marked`` and the conditions' ``marked`` both read it), ``__originRegion`` and
``__originSeq`` (missing: "", the lowest; items of the earlier scheme). Otherwise the item
is content an application wrote in ``holder`` itself, and for a write of ``holder``'s own
version with the same timestamp it counts as the latest in stream order (``LATEST``):
it is the last write of the key in ``holder``'s stream, so any copy of a version of
``holder`` that arrives was written before it. An item with no usable ``__timestamp`` is
older than every versioned one.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from dynamodb_replicator.core.conditions import (
    AttributeType,
    Compare,
    Condition,
    Const,
    Exists,
    Operand,
    Path,
    Slot,
    Template,
    Value,
    all_of,
    any_of,
    negate,
)
from dynamodb_replicator.core.content import digest
from dynamodb_replicator.core.model import Item, SystemAttributes, Version, parse_number

__all__ = [
    "LATEST",
    "ConflictPolicy",
    "LastWriterWins",
    "PreferredRegion",
    "is_genuine",
    "is_marked",
    "is_replica_write",
    "labelled_version",
    "newer",
    "seal",
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


LATEST = "~"
"""A ``seq`` above every padded sequence number (``~`` sorts after the digits): the seq of
content an application wrote in the holder itself, as conditions see it, and of a delete
of another region's version (it removes every content of that timestamp and origin)."""


def is_marked(item: Item, fields: SystemAttributes) -> bool:
    """Replica content: a marker equal to the current ``__timestamp`` and an origin."""
    marker, stamp = item.get(fields.marker), item.get(fields.timestamp)
    if marker is None or stamp is None or "N" not in marker or "N" not in stamp:
        return False
    raw = marker["N"]
    if raw == stamp["N"]:  # as the replicator writes it: one number to parse, not two
        same = parse_number(raw) is not None
    else:  # the same number spelled otherwise ("5", "5.0") is as good
        a = parse_number(raw)
        same = a is not None and a == parse_number(stamp["N"])
    return same and "S" in item.get(fields.origin, {})


def seal(nonce: str, item: Item, fields: SystemAttributes, *, digested: str = "") -> str:
    """The nonce attribute of a replica write of ``item``: the fresh ``nonce`` and the
    digest of the content it wrote (``digested``: ``digest(item, fields)``, computed before)."""
    content = digested or digest(item, fields)
    return f"{nonce}/{content[:16]}"  # 64 bits tell an update from the copy


def is_genuine(item: Item, fields: SystemAttributes) -> bool:
    """Is ``item`` replica content as the replicator wrote it, not an application's update
    of it that kept (or hit) the marker? The nonce seals the content the replica wrote;
    an update changes the content and keeps the seal. Items of the earlier scheme carry no
    nonce: the marker alone decides, as it did."""
    if not is_marked(item, fields):
        return False
    nonce = item.get(fields.nonce)
    if nonce is None:
        return True
    _, slash, sealed = str(nonce.get("S", "")).rpartition("/")
    return bool(slash) and sealed == digest(item, fields)[:16]


def as_local(item: Item, fields: SystemAttributes) -> Item:
    """``item`` as content written in its holder: the marker dropped, so the holder's view
    (``stored_version``) labels it with the holder."""
    return {name: value for name, value in item.items() if name != fields.marker}


def is_replica_write(new: Item, old: Item | None, fields: SystemAttributes) -> bool:
    """Is the stream record ``old`` -> ``new`` a write of the replicator?

    Every replica write stores a fresh nonce (``fields.nonce``); an application's update
    keeps the nonce it found (and a full put drops it), so a record whose nonce did not
    change is an application write, even when it kept or hit the marker exactly. A
    NewImage without a nonce was written under the earlier scheme: the marker alone decides.
    """
    if not is_marked(new, fields):
        return False
    nonce = new.get(fields.nonce)
    if nonce is None:
        return True
    return old is None or old.get(fields.nonce) != nonce


def stored_version(
    item: Item | None, holder: str, fields: SystemAttributes, *, own_seq: str = ""
) -> Version | None:
    """The version of an item as stored in region ``holder``; None when unversioned.
    ``own_seq``: the seq given to content the application wrote in ``holder`` (it carries
    none); ``LATEST`` gives the view of the conditions."""
    if item is None:
        return None
    stamp = item.get(fields.timestamp)
    if stamp is None or "N" not in stamp:
        return None
    raw = stamp["N"]
    value = parse_number(raw)
    if value is None:
        return None
    # ``Version`` itself, not ``Version.of``: the number is parsed already.
    marker = item.get(fields.marker)
    if marker.__class__ is dict and marker.get("N") == raw:
        # ``is_marked`` as the replicator writes it (the marker is ``raw``, parsed above)
        # without parsing the number again.
        marked = "S" in item.get(fields.origin, {})
    else:
        marked = is_marked(item, fields)
    if not marked:
        return Version(value, holder, raw, own_seq)
    seq = item.get(fields.origin_seq, {}).get("S", "")
    return Version(value, str(item[fields.origin]["S"]), raw, str(seq))


def labelled_version(item: Item | None, holder: str, fields: SystemAttributes) -> Version | None:
    """The version of ``item`` in ``holder`` as diff and repair compare it (seq aside):
    replica content as the replicator sealed it, under its origin; anything else (content
    the holder's application wrote, or its update of a copy that kept the marker) as the
    holder's own. None when unversioned."""
    if item is None:
        return None
    truthful = item if is_genuine(item, fields) else as_local(item, fields)
    return stored_version(truthful, holder, fields)


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
    return all_of(Exists(Path(key_attribute)), _stored(fields).unversioned())


def _compare_strings(a: str, operator: str, b: str) -> bool:
    return {"<": a < b, "<=": a <= b, "=": a == b}[operator]


class _StoredItem:
    """Condition building blocks that read the stored item's version. The parts that do
    not depend on the incoming version are built once per SystemAttributes (``_stored``),
    and so is last-writer-wins' condition of each kind (``older``): every write of a kind
    differs from another only in its values, so it is rendered once, bound per write."""

    __slots__ = (
        "_marked",
        "_missing_seq",
        "_origin",
        "_seq",
        "_stamp",
        "_templates",
        "_unmarked",
        "_unversioned",
        "fields",
    )

    def __init__(self, fields: SystemAttributes) -> None:
        self.fields = fields
        self._stamp = Path(fields.timestamp)
        self._origin = Path(fields.origin)
        self._seq = Path(fields.origin_seq)
        self._marked = all_of(
            Compare(Path(fields.marker), "=", self._stamp), AttributeType(self._origin, "S")
        )
        self._unmarked = negate(self._marked)
        self._unversioned = negate(AttributeType(self._stamp, "N"))
        self._missing_seq = negate(Exists(self._seq))
        # (strict, has a seq, own content is older) -> last-writer-wins' condition; written
        # by whichever thread asks first (two equal templates: either serves)
        self._templates: dict[tuple[bool, bool, bool], Template] = {}

    def unversioned(self) -> Condition:
        return self._unversioned

    def marked(self) -> Condition:
        """``is_marked``: the marker equals ``__timestamp`` *and* an origin (a string) is
        stored. Without the origin test an item an application wrote with the marker but no
        ``__originRegion`` would read as replica content no version of its timestamp
        outranks (every origin comparison false), while the stream, diff and repair read
        it as the holder's own: restores and repair's puts refused forever. Every item the
        replicator writes (copies, tombstones) carries an origin: for them nothing changes."""
        return self._marked

    def origin(self, operator: str, region: str, holder: str) -> Condition:
        return any_of(
            all_of(self._marked, Compare(self._origin, operator, Value({"S": region}))),
            all_of(self._unmarked, Const(_compare_strings(holder, operator, region))),
        )

    def seq(self, operator: str, incoming: Operand | None) -> Condition:
        """The stored replica content's ``__originSeq`` (missing: "") against ``incoming``
        (None: the incoming seq is "")."""
        if incoming is None:
            return self._missing_seq if operator == "<=" else Const(False)
        return any_of(self._missing_seq, Compare(self._seq, operator, incoming))

    def origin_then_seq(
        self, operator: str, region: Operand, seq: Operand | None, own: bool
    ) -> Condition:
        """(origin, seq) of the stored item ``operator`` (``region``, ``seq``); ``operator``
        is "<" or "<=". ``own``: does content the application wrote in the holder (seq
        ``LATEST``) compare so (``_own_is_older``)?"""
        in_order = any_of(
            Compare(self._origin, "<", region),
            all_of(Compare(self._origin, "=", region), self.seq(operator, seq)),
        )
        return any_of(all_of(self._marked, in_order), all_of(self._unmarked, Const(own)))

    def older(self, strict: bool, has_seq: bool, own: bool) -> Template:
        """Last-writer-wins' ``stored_is_older`` with the incoming version's values open:
        slot 0 its ``__timestamp`` (N), 1 its origin (S), 2 its seq (S, when it has one)."""
        key = (strict, has_seq, own)
        template = self._templates.get(key)
        if template is None:
            stamp = Slot(0)
            order = self.origin_then_seq(
                "<" if strict else "<=", Slot(1), Slot(2) if has_seq else None, own
            )
            condition = any_of(
                self._unversioned,
                Compare(self._stamp, "<", stamp),
                all_of(Compare(self._stamp, "=", stamp), order),
            )
            template = self._templates[key] = Template(condition)
        return template


def _own_is_older(holder: str, incoming: Version, strict: bool) -> bool:
    """Does content the application wrote in ``holder`` (origin ``holder``, seq ``LATEST``)
    give way to ``incoming`` of the same timestamp?"""
    own, other = (holder, LATEST), (incoming.origin, incoming.seq)
    return own < other or (not strict and own == other)


@functools.lru_cache(maxsize=16)
def _stored(fields: SystemAttributes) -> _StoredItem:
    return _StoredItem(fields)


@dataclass(frozen=True, slots=True)
class LastWriterWins:
    """The default: the larger ``__timestamp`` wins; on a tie, the larger origin region name."""

    fields: SystemAttributes = field(default_factory=SystemAttributes)

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        return (version.timestamp, version.origin, version.seq)

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        seq = incoming.seq
        own = _own_is_older(holder, incoming, strict)
        template = _stored(self.fields).older(strict, bool(seq), own)
        stamp, origin = {"N": incoming.raw_timestamp}, {"S": incoming.origin}
        return template.bind(stamp, origin, {"S": seq}) if seq else template.bind(stamp, origin)


@dataclass(frozen=True, slots=True)
class PreferredRegion:
    """Versions that originated in ``region`` beat all others; otherwise last writer wins.

    An example of a custom policy (docs/development/conflict-policy.md): the pure key and the
    condition tree describe the same order.
    """

    region: str
    fields: SystemAttributes = field(default_factory=SystemAttributes)

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        return (version.origin == self.region, version.timestamp, version.origin, version.seq)

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        stored = _stored(self.fields)
        stored_preferred = stored.origin("=", self.region, holder)
        by_time = LastWriterWins(self.fields).stored_is_older(incoming, holder, strict=strict)
        if incoming.origin == self.region:
            same_class: Condition = stored_preferred
            other_class: Condition = negate(stored_preferred)
        else:
            same_class, other_class = negate(stored_preferred), Const(False)
        return any_of(stored.unversioned(), other_class, all_of(same_class, by_time))
