"""Repair's decision: each differing key's winning version, and the writes that give it to
the regions that lag (pure; ``ops.repairer`` reads the regions and writes).

The winner is chosen among every region's item *and* remembered delete (tombstone) by the
conflict policy; a delete wins over a put of the same version. The writes go through the
replicator's conditional writer, so a repair racing live traffic never overwrites newer data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from dynamodb_replicator.core.model import Item, ItemKey, SystemAttributes, Tombstone, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, user_image
from dynamodb_replicator.core.policy import (
    LATEST,
    ConflictPolicy,
    as_local,
    is_genuine,
    is_marked,
    labelled_version,
    stored_version,
)
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.scoping import withheld
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.ops.diff import digest
from dynamodb_replicator.ops.repair_labels import (
    held_versions,
    lifted,
    own_seq,
    stand_in,
    unsure,
)

__all__ = ["resolve", "unread_deleters"]

_Op = TypeVar("_Op", PutVersion, DeleteVersion)


def resolve(
    key: ItemKey,
    items: Mapping[str, Item | None],
    tombs: Mapping[str, Tombstone | None],
    *,
    policy: ConflictPolicy,
    fields: SystemAttributes,
    rule: ResidencyRule | None = None,
) -> dict[str, PutVersion | DeleteVersion] | None:
    """The operation each region needs for ``key`` (regions that agree get none). With a
    residency ``rule``, a region outside the winner's scope that holds the key gets a
    delete of the winning version instead (the item leaves it, and stays out). Labels and
    the tombstones that count: ``ops.repair_labels``.

    None when nothing can be decided: no region holds a versioned item or a tombstone, or
    a tombstone naming a region not read may be a delete or a stand-in (``unsure``) and
    the two readings decide the key differently (``unread_deleters`` names the region).
    """
    held = held_versions(items, fields)
    remembered = [(region, t) for region, t in tombs.items() if t is not None]
    scoped = rule is not None
    kept_out = {r for r, t in remembered if stand_in(t, r, held, tombs, scoped=scoped)}
    doubtful = {r for r, t in remembered if unsure(t, r, held, tombs, scoped=scoped)}
    # Each doubtful tombstone read both ways: a decision that depends on it is no decision.
    readings = [kept_out | doubtful, kept_out - doubtful] if doubtful else [kept_out]
    # Read alike in every reading, so the winner's label is too (``own_seq``).
    certain = kept_out - doubtful
    decided = [
        _decide(key, items, remembered, out, certain, policy=policy, fields=fields, rule=rule)
        for out in readings
    ]
    first = _written(decided[0])
    return decided[0] if all(_written(d) == first for d in decided) else None


def _written(ops: Mapping[str, PutVersion | DeleteVersion] | None) -> object:
    """What a decision writes, for telling whether two readings agree: each region's kind
    of write and version (and a put's content). A delete's ``deleted_in`` is left out: it
    only names which deleter's tombstone decided it (co-deleters' tombstones name
    different regions until each hears of the other), and D1 keeps the larger name
    wherever both meet, so either is the same delete."""
    if ops is None:
        return None
    return {
        region: op if isinstance(op, PutVersion) else ("delete", op.key, op.version)
        for region, op in ops.items()
    }


def unread_deleters(tombs: Mapping[str, Tombstone | None]) -> list[str]:
    """The regions ``tombs`` name as deleting that were not read (``tombs`` has the
    regions read): where ``resolve`` found a tombstone it cannot tell, the regions to add
    to ``--regions``."""
    return sorted({t.deleted_in for t in tombs.values() if t and t.deleted_in not in tombs})


def _decide(
    key: ItemKey,
    items: Mapping[str, Item | None],
    remembered: Sequence[tuple[str, Tombstone]],
    kept_out: set[str],
    certain: set[str],
    *,
    policy: ConflictPolicy,
    fields: SystemAttributes,
    rule: ResidencyRule | None,
) -> dict[str, PutVersion | DeleteVersion] | None:
    """``resolve`` with the tombstones remembered in ``kept_out`` taken for stand-ins
    (those in ``certain`` are in every reading)."""
    tombs = dict(remembered)
    best_item = _best_item(items, tombs, certain, policy, fields)
    best_tomb = max(
        (t for region, t in remembered if region not in kept_out),
        key=lambda t: policy.order_key(t.version),
        default=None,
    )
    if best_tomb is not None and (
        best_item is None or policy.order_key(best_tomb.version) >= policy.order_key(best_item[0])
    ):
        op = DeleteVersion(key, best_tomb.version, best_tomb.deleted_in, NO_SEQUENCE)
        return {
            region: _over(op, item, fields) for region, item in items.items() if item is not None
        }
    if best_item is None:
        # Only tombstones that are no delete (yet: one whose own region has not written
        # it is still in flight): nothing to write, and nothing undecidable either.
        return {} if remembered else None
    version, holder, winner = best_item
    image = user_image(winner, fields)
    # Only a put must pass a stand-in: outside the winner's scope a delete goes instead.
    scope = None if rule is None else rule.allowed(image)
    passed = [t for r, t in remembered if r in kept_out and (scope is None or r in scope)]
    put = PutVersion(key, lifted(version, passed), image, NO_SEQUENCE)
    return _spread(
        put, holder, wanted=digest(winner, fields), items=items, fields=fields, rule=rule
    )


def _best_item(
    items: Mapping[str, Item | None],
    tombs: Mapping[str, Tombstone | None],
    kept_out: set[str],
    policy: ConflictPolicy,
    fields: SystemAttributes,
) -> tuple[Version, str, Item] | None:
    """The winning item, its version as repair labels it, and the region holding it
    (``kept_out``: regions whose tombstone is a stand-in in every reading)."""
    best: tuple[Version, str, Item] | None = None
    for region, item in items.items():
        version = stored_version(item, region, fields)
        if item is None or version is None:
            continue
        if not is_genuine(item, fields):
            # Content this region's application wrote: unmarked, or an update of a copy
            # that kept its marker (the seal broken), a later write of T here than the copy.
            seq = own_seq(region, as_local(item, fields), items, tombs, fields, kept_out=kept_out)
            version = Version.of(version.raw_timestamp, region, seq)
        if best is None or policy.order_key(version) > policy.order_key(best[0]):
            best = (version, region, item)
    return best


def _spread(
    put: PutVersion,
    holder: str,
    *,
    wanted: str,
    items: Mapping[str, Item | None],
    fields: SystemAttributes,
    rule: ResidencyRule | None,
) -> dict[str, PutVersion | DeleteVersion]:
    """``put`` where a region lacks the winner's content; with a ``rule``, a delete of it
    where the region holds the key outside the winner's scope."""
    ops: dict[str, PutVersion | DeleteVersion] = {}
    for region, item in items.items():
        delete = None if rule is None else withheld(put, region, rule, holder)
        if delete is not None:
            if item is not None:
                ops[region] = _over(_in_origin(delete, region), item, fields)
        elif not _holds(put, wanted, item, region, fields):
            ops[region] = _over(put, item, fields)
    return ops


def _over(op: _Op, item: Item | None, fields: SystemAttributes) -> _Op:
    """``op`` for a region holding ``item``. An application update that kept a copy's
    marker and nonce (the seal broken) is that region's own content, as repair ranked it,
    but the conditions read the copy's labels, which may outrank the winner: the write
    then supersedes its nonce (only that region's application content carries it: nonces
    never repeat). A put replaces an item still carrying it that, read as the holder's
    own, is older (P1), as the restore of a losing disguised update does; a delete
    relabels such an item that is not newer as the holder's own, then removes it (D2s,
    ``core.writes``: removed as it was, a write-back of the replica's content racing
    repair would read as that replica in the REMOVE record, and go out as a delete of
    the replica's version)."""
    if item is None or not is_marked(item, fields) or is_genuine(item, fields):
        return op
    nonce = item.get(fields.nonce, {}).get("S")
    return op if nonce is None else replace(op, supersedes=str(nonce))


def _holds(
    put: PutVersion, wanted: str, item: Item | None, region: str, fields: SystemAttributes
) -> bool:
    """Does ``region`` hold the winner: its content (digest ``wanted``) under its timestamp
    and origin? The same content under another version (its own write of that content,
    say) is not the winner: a later delete of that version there would remove it."""
    if item is None or digest(item, fields) != wanted:
        return False
    held = labelled_version(item, region, fields)
    winner = put.version
    return held is not None and (held.timestamp, held.origin) == (winner.timestamp, winner.origin)


def _in_origin(delete: DeleteVersion, region: str) -> DeleteVersion:
    """In the version's origin the delete is of (T, O, ``LATEST``): O's own content there
    is unmarked, which conditions read as ``LATEST`` (``core.scoping._own``), so a delete
    of a lower seq would leave it."""
    if delete.version.origin != region:
        return delete
    own = Version.of(delete.version.raw_timestamp, region, LATEST)
    return DeleteVersion(delete.key, own, delete.deleted_in, delete.sequence_number)
