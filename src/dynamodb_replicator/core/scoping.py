"""A plan projected onto its items' scopes (data residency, ``core.residency``). Pure.

The planner sends every version of a key everywhere; this projection keeps each put only
where the version's scope allows it. Every other region gets a delete of that very
version instead (nothing newer: a later content of its timestamp and origin, another
write of that millisecond, may belong there; ``_kept_out``): it removes whatever that
region holds of the key up to that version and remembers the version in its tombstone
table, so an older version arriving late there cannot bring the item back, and an item
whose scope changed leaves the regions it may no longer be in. A version therefore still
reaches every region, as a put or as a delete, and each region ends with the largest
version of the key, held if the region is in its scope, remembered as deleted otherwise:
the winner projected onto its scope.

A write an application made in a region outside the item's own scope (a contract
violation of its own kind) is replicated to its scope like any other and then deleted in
the region it was written in, as every content of its timestamp there (``_own``).

The deletes name a region other than the one they are applied in as the deleting one: the
removal they cause shows up in that region's stream, where the planner takes it for an
echo (``core.plan``) instead of a delete to replicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dynamodb_replicator.core.contract import Violation, ViolationKind
from dynamodb_replicator.core.model import Change, Item, Operation, Version, pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion, Plan, PutVersion, WriteOp
from dynamodb_replicator.core.policy import LATEST
from dynamodb_replicator.core.residency import ResidencyRule

__all__ = ["Scoped", "evicted", "project", "withheld"]


@dataclass(frozen=True, slots=True)
class Scoped:
    """The projected writes per region; per region, the SequenceNumbers of the puts
    withheld from it (sent as deletes of their version); the source's own writes outside
    their scope."""

    writes: Mapping[str, Sequence[WriteOp]]
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    outside: tuple[Violation, ...] = ()


# The seq of a delete standing in for a put of a version without one (an item of the
# earlier scheme, seq "", the lowest content of its timestamp and origin): above "" and
# below every real stream sequence number. The one rule (``core.writes``): no delete
# carries a seq of "". A delete seen in a stream names what it covers (its own record's
# seq in the version's origin, ``core.codec``); a delete made here stands in for one put
# and names just that version, so an earlier-scheme put gets the lowest real seq (a
# record seq would be another stream's, or cover a later content of the origin). A
# delete of seq "" itself would be remembered by a tombstone without ``__originSeq``,
# which reads as the earlier scheme's delete of every content of (T, O)
# (``core.tombstones``): it would remove, or refuse, a later content of that very
# timestamp, the winner perhaps, in a region of its scope.
_BELOW_EVERY_SEQ = pad_sequence("0")


def _kept_out(version: Version) -> Version:
    """The version of the delete that replaces a put of ``version`` where its item may not
    live: that version and nothing newer, so a later content of its timestamp and origin
    (another write of that millisecond, whose scope may include the region) is spared.
    In the origin region too: the origin's own content there is unmarked and reads as
    ``LATEST``, so this delete leaves it; if it is outside its scope, the origin's own
    stream record removes it (``project``)."""
    if not version.seq:
        return Version.of(version.raw_timestamp, version.origin, _BELOW_EVERY_SEQ)
    return version


def _own(version: Version) -> Version:
    """The version of the delete that removes the source's own write outside its scope:
    that content is unmarked in the source, which conditions read with seq ``LATEST``
    (``core.writes``), so the delete is of (T, O, ``LATEST``), as any delete of another
    region's version is. (It also removes a later content the application wrote in the
    same millisecond before the delete is applied: the README's residency limits.)"""
    return Version.of(version.raw_timestamp, version.origin, LATEST)


def withheld(op: WriteOp, region: str, rule: ResidencyRule, source: str) -> DeleteVersion | None:
    """The delete that replaces ``op`` in ``region`` when its item may not live there
    (``source``: the region whose stream or repair sends it)."""
    if not isinstance(op, PutVersion):
        return None
    allowed = rule.allowed(op.image)
    if allowed is None or region in allowed:
        return None
    deleter = source if source != region else min(allowed)
    return DeleteVersion(op.key, _kept_out(op.version), deleter, op.sequence_number)


def evicted(op: PutVersion, rule: ResidencyRule, holder: str) -> DeleteVersion | None:
    """The delete that removes from ``holder`` the item ``op`` puts, read from ``holder``
    itself, when ``holder`` is outside its scope (the joining table's own items in a merge,
    ``ops.merge``). Content of ``holder``'s own version is unmarked there: it is removed
    as (T, O, ``LATEST``), like the source's own writes outside their scope."""
    delete = withheld(op, holder, rule, holder)
    if delete is None or op.version.origin != holder:
        return delete
    return DeleteVersion(op.key, _own(op.version), delete.deleted_in, op.sequence_number)


def _outside(change: Change, rule: ResidencyRule, source: str) -> frozenset[str] | None:
    """The scope of an application write of ``source`` that excludes ``source`` (None:
    not such a write)."""
    if change.operation is not Operation.PUT or change.echo or change.version is None:
        return None
    allowed = rule.allowed(change.image or {})
    return None if allowed is None or source in allowed else allowed


def _violation(change: Change, image: Item, rule: ResidencyRule, source: str) -> Violation:
    assert change.version is not None
    return Violation(
        ViolationKind.OUTSIDE_SCOPE,
        change.key,
        source,
        change.sequence_number,
        change.version.raw_timestamp or str(change.version.timestamp),
        rule.describe(image) + " -> " + ", ".join(sorted(rule.allowed(image) or ())),
    )


def _lost(plan: Plan) -> set[str]:
    """Sequence numbers of the source's writes that lost (the planner restores the winner
    instead: its projection takes care of the source)."""
    return {conflict.sequence_number for conflict in plan.lost_locally}


def project(
    plan: Plan, changes: Iterable[Change], *, rule: ResidencyRule | None, source: str
) -> Scoped:
    """``plan`` (of ``changes`` of region ``source``) with every put kept to its scope."""
    if rule is None:
        return Scoped(plan.writes)
    writes: dict[str, list[WriteOp]] = {}
    refused: dict[str, tuple[str, ...]] = {}
    for region, ops in plan.writes.items():
        kept: list[WriteOp] = []
        for op in ops:
            delete = withheld(op, region, rule, source)
            kept.append(op if delete is None else delete)
            if delete is not None:
                refused[region] = (*refused.get(region, ()), op.sequence_number)
        writes[region] = kept
    outside: list[Violation] = []
    if source in writes:
        lost = _lost(plan)
        for change in changes:
            allowed = _outside(change, rule, source)
            if allowed is None or change.sequence_number in lost:
                continue
            assert change.version is not None and change.image is not None
            removed = _own(change.version)
            writes[source].append(
                DeleteVersion(change.key, removed, min(allowed), change.sequence_number)
            )
            outside.append(_violation(change, change.image, rule, source))
        # Stream order per key: the delete follows what the write's record asked for here.
        writes[source].sort(key=lambda op: int(op.sequence_number))
    return Scoped(writes, refused, tuple(outside))
