"""What differs between regions: each item as a region holds it becomes one row (key,
digest of its content without the replicator's bookkeeping attributes, version), and rows of
the same keys are compared region against region (``ops.diff_scan`` feeds them from a scan
of every region, ``ops.settle`` from re-reads of single keys).

Regions agree on a key holding the same content under the same version (timestamp and
origin, ``core.policy.labelled_version``; not ``__originSeq``, which the origin's own item
lacks): the same content under two versions is a ``version`` difference, since the next
write or delete of the key is conditioned on versions (docs: diff and repair).

With a residency rule (``core.residency``) each row carries its item's scope: an item held
in a region outside its scope is a difference of its own kind (``outside``), and a region
outside an item's scope is not expected to hold it (neither missing nor extra there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynamodb_replicator.core.codec import key_to_json
from dynamodb_replicator.core.content import digest
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.policy import labelled_version
from dynamodb_replicator.core.residency import ResidencyRule

if TYPE_CHECKING:
    from dynamodb_replicator.ops.settle import SettleReport

__all__ = [
    "DiffReport",
    "Row",
    "compare_bucket",
    "digest",
    "key_differs",
    "rows_of",
]

SAMPLES = 5
KINDS = ("missing", "extra", "different", "version", "outside")


@dataclass(frozen=True, slots=True)
class Row:
    """One item as a region holds it: key text, content digest, version (raw timestamp and
    origin as ``labelled_version`` gives them; None: unversioned) and residency scope."""

    key: str
    digest: str
    timestamp: str | None
    origin: str | None
    scope: tuple[str, ...] | None = None  # where the item may live (None: everywhere)

    def allowed_in(self, region: str) -> bool:
        return self.scope is None or region in self.scope


@dataclass(slots=True)
class RegionDiff:
    missing: int = 0
    extra: int = 0
    different: int = 0
    version: int = 0  # the same content under another version (timestamp, origin)
    outside: int = 0  # items held here outside their residency scope
    samples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @property
    def identical(self) -> bool:
        return not any(getattr(self, kind) for kind in KINDS)

    def note(self, kind: str, key: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < SAMPLES:
            self.samples[kind].append(key)


@dataclass(slots=True)
class DiffReport:
    """Differences of every region against the reference region (the first one)."""

    table: str
    reference: str
    items: dict[str, int] = field(default_factory=dict)
    regions: dict[str, RegionDiff] = field(default_factory=dict)
    settle: SettleReport | None = None  # how the differing keys settled (ops/settle.py)

    @property
    def identical(self) -> bool:
        """Identical as scanned."""
        return all(d.identical for d in self.regions.values())

    @property
    def verdict(self) -> str:
        """identical, outside-scope (an item sits where its residency rule does not allow
        it: not settled, ``repair`` removes it), in-flight (every difference settled),
        diverged, unsettled (the settle wait ran out) or different (not settled)."""
        if self.identical:
            return "identical"
        if any(d.outside for d in self.regions.values()):
            return "outside-scope"
        if self.settle is None:
            return "different"
        if self.settle.diverged:
            return "diverged"
        return "unsettled" if self.settle.unsettled else "in-flight"

    @property
    def clean(self) -> bool:
        """Nothing diverged: identical, or every difference was in flight."""
        return self.verdict in ("identical", "in-flight")

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "reference": self.reference,
            "identical": self.identical,
            "verdict": self.verdict,
            "settle": None if self.settle is None else self.settle.as_json(),
            "items": self.items,
            "regions": {
                name: {
                    **{kind: getattr(d, kind) for kind in KINDS},
                    # Copies: a caller turning the keys into objects leaves the report's
                    # text keys as they are (repair prints them after its JSON is built).
                    "samples": {kind: list(keys) for kind, keys in d.samples.items()},
                }
                for name, d in self.regions.items()
            },
        }


def compare_bucket(
    rows: Mapping[str, Mapping[str, Row]], reference: str, report: DiffReport
) -> list[str]:
    """Record one bucket's differences in ``report``; return the keys that differ anywhere."""
    differing: set[str] = set()
    for region, mine in rows.items():
        for key, row in mine.items():
            if not row.allowed_in(region):
                report.regions.setdefault(region, RegionDiff()).note("outside", key)
                differing.add(key)
    held = {
        region: {key: row for key, row in mine.items() if row.allowed_in(region)}
        for region, mine in rows.items()
    }
    for region in held:
        if region != reference:
            report.regions.setdefault(region, RegionDiff())
    for key in sorted(set().union(*(mine.keys() for mine in held.values()))):
        base = _base(held, key, reference)
        for region, mine in held.items():
            if region == base:
                continue
            kind = _difference(held[base].get(key), mine.get(key), region, reference)
            if kind is not None:
                report.regions.setdefault(region, RegionDiff()).note(kind, key)
                differing.add(key)
    return sorted(differing)


def _base(held: Mapping[str, Mapping[str, Row]], key: str, reference: str) -> str:
    """The region ``key`` is compared against: the reference, unless the reference lacks it
    and a holder's row says the reference may not hold it; then the first such holder.
    Else the regions of a scope that leaves out the reference would never be compared
    with each other, and a copy missing or different there would go unseen."""
    if key in held[reference]:
        return reference
    for region, mine in held.items():
        row = mine.get(key)
        if row is not None and not row.allowed_in(reference):
            return region
    return reference


def _difference(base: Row | None, other: Row | None, region: str, reference: str) -> str | None:
    """How ``region``'s row of a key differs from the base's (None: it does not). No base
    row: the reference lacks the key and every holder says it may hold it."""
    if other is None:
        return "missing" if base is not None and base.allowed_in(region) else None
    if base is None or (other.allowed_in(reference) and not base.allowed_in(reference)):
        return "extra"  # the reference lacks an item this region's version allows there
    if other.digest != base.digest:
        return "different"
    return "version" if (other.timestamp, other.origin) != (base.timestamp, base.origin) else None


def key_differs(seen: Sequence[tuple[str, Row | None]]) -> bool:
    """Does one key, as each region holds it (region, row; the first region is the
    reference), differ anywhere, as ``compare_bucket`` judges it?"""
    reference = seen[0][0]
    rows = {region: {} if row is None else {row.key: row} for region, row in seen}
    return bool(compare_bucket(rows, reference, DiffReport("", reference)))


def rows_of(
    items: Sequence[Mapping[str, Any]],
    region: str,
    key_names: Sequence[str],
    fields: SystemAttributes,
    rule: ResidencyRule | None = None,
) -> list[Row]:
    """The rows of ``items`` as ``region`` holds them."""
    rows = []
    for item in items:
        version = labelled_version(item, region, fields)
        allowed = None if rule is None else rule.allowed(item)
        rows.append(
            Row(
                key_to_json(item, key_names),
                digest(item, fields),
                version.raw_timestamp if version else None,
                version.origin if version else None,
                None if allowed is None else tuple(sorted(allowed)),
            )
        )
    return rows
