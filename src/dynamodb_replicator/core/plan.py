"""Changes of one source region -> write operations per region. Pure.

For each change of source region S:

* a replica write seen again in S's stream (an echo) is dropped (a record that looks like
  one but replaced a newer version is an application write, see below);
* a delete of an item without ``__timestamp`` goes to every other region, where it removes
  only an item without one too;
* an application write that is older than the version it replaced (clock skew, or the
  same timestamp from a smaller region name) loses: the replaced version is restored in S
  and sent everywhere. Replica content (an OldImage whose sealed content is unchanged)
  keeps its labels; S's own content is restored as S's version at this record's place in
  S's stream (no other content of that version lies between the two). A losing update of
  a replica write kept its nonce, and S may hold it (or a later update of it) labelled as
  that replica: the restore also replaces an item carrying that nonce whose content, read
  as S's own, is older than the restored version (``supersedes``, core.writes);
* an application write that hit the replica's timestamp exactly, kept the marker and won
  is also sent to S itself, so that S's copy is labelled with S's version;
* an application insert that is older than a delete S remembers loses: it is deleted in S;
* any other write is sent to every other region;
* a delete is sent to every region, S included, so S remembers it as well (a late, older
  version arriving in S must not resurrect the item); a delete that S only saw because
  the replicator applied a delete (another region's, or S's own applied in S) is an echo
  and is dropped.

Operations keep the changes' order, so per-key order survives into every target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome
from dynamodb_replicator.core.content import digest
from dynamodb_replicator.core.model import (
    Change,
    Item,
    ItemKey,
    Operation,
    SystemAttributes,
    Tombstone,
    Version,
    pad_sequence,
)
from dynamodb_replicator.core.policy import (
    LATEST,
    ConflictPolicy,
    is_genuine,
    is_marked,
    newer,
    would_apply,
)

__all__ = [
    "DeleteUnversioned",
    "DeleteVersion",
    "Plan",
    "PutVersion",
    "WriteOp",
    "plan_changes",
    "user_image",
]


@dataclass(frozen=True, slots=True)
class PutVersion:
    """Write ``image`` as version ``version`` where the stored item is older."""

    key: ItemKey
    version: Version
    image: Item
    sequence_number: str
    # The version the change replaced in its source (None: an insert); a region holding a
    # newer one than this held a concurrent write (see core.conflicts).
    replaces: Version | None = None
    # A restore of a version that lost locally: it must not replace the same version, which
    # is then either already there or a later write with an equal timestamp in the same
    # region (the later one wins).
    strict: bool = False
    # The nonce of a replica write that the losing application write updated: in the
    # source region, the restore also replaces an item still carrying it whose content,
    # read as the source's own, is older than ``version`` (core.writes, P1).
    supersedes: str | None = None
    # The digest of ``image`` (``core.content``) by the SystemAttributes it skipped, filled
    # by the first writer that seals it: one op goes to every target region, and hashing
    # the content once per region was a tenth of the runner's CPU per write.
    digests: dict[SystemAttributes, str] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def digest(self, fields: SystemAttributes) -> str:
        """``core.content.digest`` of ``image``, computed once per op."""
        found = self.digests.get(fields)
        if found is None:
            # Two regions' writers may both compute it: the same value, set twice.
            found = self.digests[fields] = digest(self.image, fields)
        return found


@dataclass(frozen=True, slots=True)
class DeleteUnversioned:
    """Remove an item that had no ``__timestamp`` where the stored item has none either
    (a versioned item is newer than any unversioned one); nothing is remembered."""

    key: ItemKey
    sequence_number: str


@dataclass(frozen=True, slots=True)
class DeleteVersion:
    """Remember a delete of ``version`` and remove the item where it is not newer."""

    key: ItemKey
    version: Version
    deleted_in: str
    sequence_number: str
    # Repair's only: the nonce of a replica write the target region's application updated
    # keeping its marker (its kept labels may outrank ``version``). Where the stored item
    # still carries it and, read as that region's own content, is not newer than
    # ``version``, it is relabelled so and then removed (core.writes, D2s).
    supersedes: str | None = None


WriteOp = PutVersion | DeleteVersion | DeleteUnversioned


@dataclass(frozen=True, slots=True)
class Plan:
    """Operations for each region, in stream order, the changes dropped as echoes, and the
    source's own writes that lost (they are undone in the source)."""

    writes: Mapping[str, Sequence[WriteOp]]
    echoes: int = 0
    lost_locally: tuple[Conflict, ...] = field(default=())


def user_image(image: Item, fields: SystemAttributes) -> dict[str, dict[str, object]]:
    """The item without the replicator's own attributes (the writer adds fresh ones)."""
    added = fields.added()
    return {name: value for name, value in image.items() if name not in added}


def _lost_locally(change: Change, source: str, winner: Version, image: Item | None) -> Conflict:
    assert change.version is not None
    return Conflict(
        ConflictOutcome.LOST,
        change.key,
        source,
        "put",
        change.version,
        winner,
        change.sequence_number,
        other_deleted=image is None,
        change_item=change.image,
        other_item=image,
    )


def plan_changes(
    changes: Iterable[Change],
    *,
    source: str,
    regions: Sequence[str],
    policy: ConflictPolicy,
    fields: SystemAttributes,
    tombstones: Mapping[ItemKey, Tombstone],
) -> Plan:
    """Plan the writes for ``changes`` of region ``source`` into ``regions``.

    ``regions`` normally includes ``source`` (it repairs itself); a caller that handles only
    some targets passes just those.
    """
    writes: dict[str, list[WriteOp]] = {region: [] for region in regions}
    targets = [region for region in regions if region != source]
    echoes = 0
    lost: list[Conflict] = []
    for change in changes:
        if change.version is None:
            # A delete of an item that never had a version (legacy data, TTL).
            unversioned = DeleteUnversioned(change.key, change.sequence_number)
            for region in targets:
                writes[region].append(unversioned)
            continue
        if change.operation is Operation.DELETE:
            if _removed_by_the_replicator(change, tombstones.get(change.key), source, policy):
                echoes += 1
                continue
            op: WriteOp = DeleteVersion(change.key, change.version, source, change.sequence_number)
            for region in regions:
                writes[region].append(op)
            continue
        # A replica write never replaces a newer version: a record that looks like one but
        # went backwards is an application write that kept the old marker.
        if change.echo and not newer(policy, change.old_version, change.version):
            echoes += 1
            continue
        if newer(policy, change.old_version, change.version):
            assert change.old_image is not None and change.old_version is not None
            lost.append(_lost_locally(change, source, change.old_version, change.old_image))
            for region in regions:
                writes[region].append(_restore(change, source, fields))
            continue
        tomb = tombstones.get(change.key)
        if (
            change.old_image is None
            and tomb is not None
            and not would_apply(policy, change.version, tomb.version, strict=True)
        ):
            lost.append(_lost_locally(change, source, tomb.version, None))
            if source in writes:
                writes[source].append(
                    DeleteVersion(change.key, tomb.version, tomb.deleted_in, change.sequence_number)
                )
            continue
        assert change.image is not None
        put = PutVersion(
            change.key,
            change.version,
            user_image(change.image, fields),
            change.sequence_number,
            replaces=change.old_version,
        )
        # A write that looks like replica content here is relabelled here too.
        for region in regions if _disguised(change, fields) else targets:
            writes[region].append(put)
    return Plan(writes, echoes, tuple(lost))


def _removed_by_the_replicator(
    change: Change, tomb: Tombstone | None, source: str, policy: ConflictPolicy
) -> bool:
    """Whether a delete record of ``source`` is the replicator's own removal there (an
    echo): what it removed is covered by a delete ``source`` remembers (the labels of the
    content removed, not the version this record carries: else the removal of (T, O, x)
    by a delete (T, O, d) would go out again as a delete of every content of (T, O), or,
    in O itself, as O's delete at this later record; either removes a later re-insert of
    T in O)."""
    if tomb is None or newer(policy, change.old_version or change.version, tomb.version):
        return False
    if tomb.deleted_in != source:
        return True
    # A delete of ``source`` itself: its own record (first read or replayed) is no echo,
    # but the replicator applies it in ``source`` after its tombstone (D1 before D2, P3
    # after P2), so a removal there at a later record of a copy of ``source``'s own
    # version that the delete covers is the replicator's. (A delete of another region's
    # version goes out again as the same (T, O, LATEST): harmless, so left alone.)
    own = tomb.version.origin == source and tomb.version.seq != LATEST
    return own and tomb.version.seq < pad_sequence(change.sequence_number)


def _disguised(change: Change, fields: SystemAttributes) -> bool:
    """An application write whose stored item reads as replica content (it hit the marker)."""
    return change.image is not None and not change.echo and is_marked(change.image, fields)


def _restore(change: Change, source: str, fields: SystemAttributes) -> PutVersion:
    """The put that restores the version a losing local write replaced."""
    assert change.old_image is not None and change.old_version is not None
    winner = change.old_version
    if not is_genuine(change.old_image, fields):
        winner = Version.of(winner.raw_timestamp, source, pad_sequence(change.sequence_number))
    nonce = (change.image or {}).get(fields.nonce, {}).get("S")
    supersedes = None if nonce is None else str(nonce)
    return PutVersion(
        change.key,
        winner,
        user_image(change.old_image, fields),
        change.sequence_number,
        replaces=change.version,
        strict=True,
        supersedes=supersedes,
    )
