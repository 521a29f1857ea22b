"""Repair: write each differing key's winning version to the regions that lag.

The winner is chosen among every region's item *and* remembered delete (tombstone) by the
conflict policy; a delete wins over a put of the same version. The writes go through the
replicator's conditional writer, so a repair racing live traffic never overwrites newer data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.core.codec import key_object
from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.model import (
    Item,
    ItemKey,
    SystemAttributes,
    TableNames,
    Tombstone,
    Version,
)
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp, user_image
from dynamodb_replicator.core.policy import (
    LATEST,
    ConflictPolicy,
    as_local,
    is_genuine,
    labelled_version,
    stored_version,
)
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.scoping import withheld
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.core.tombstones import tombstone_from_item
from dynamodb_replicator.ops.diff import digest
from dynamodb_replicator.ops.repair_labels import held_versions, lifted, own_seq, stand_in

__all__ = ["RepairReport", "Repairer", "resolve"]

SAMPLES = 5
UNDECIDABLE_LISTED = 100


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

    None when no region holds a versioned item or a tombstone: nothing can be decided.
    """
    best_item = _best_item(items, tombs, policy, fields)
    held = held_versions(items, fields)
    remembered = [(region, t) for region, t in tombs.items() if t is not None]
    kept_out = {r for r, t in remembered if stand_in(t, r, held, tombs, scoped=rule is not None)}
    stand_ins = [t for region, t in remembered if region in kept_out]
    best_tomb = max(
        (t for region, t in remembered if region not in kept_out),
        key=lambda t: policy.order_key(t.version),
        default=None,
    )
    if best_tomb is not None and (
        best_item is None or policy.order_key(best_tomb.version) >= policy.order_key(best_item[0])
    ):
        op: PutVersion | DeleteVersion = DeleteVersion(
            key, best_tomb.version, best_tomb.deleted_in, NO_SEQUENCE
        )
        return {region: op for region, item in items.items() if item is not None}
    if best_item is None:
        # Only tombstones that are no delete (yet: one whose own region has not written
        # it is still in flight): nothing to write, and nothing undecidable either.
        return {} if remembered else None
    version, holder, winner = best_item
    put = PutVersion(key, lifted(version, stand_ins), user_image(winner, fields), NO_SEQUENCE)
    return _spread(
        put, holder, wanted=digest(winner, fields), items=items, fields=fields, rule=rule
    )


def _best_item(
    items: Mapping[str, Item | None],
    tombs: Mapping[str, Tombstone | None],
    policy: ConflictPolicy,
    fields: SystemAttributes,
) -> tuple[Version, str, Item] | None:
    """The winning item, its version as repair labels it, and the region holding it."""
    best: tuple[Version, str, Item] | None = None
    for region, item in items.items():
        version = stored_version(item, region, fields)
        if item is None or version is None:
            continue
        if not is_genuine(item, fields):
            # Content this region's application wrote: unmarked, or an update of a copy
            # that kept its marker (the seal broken), a later write of T here than the copy.
            seq = own_seq(region, as_local(item, fields), items, tombs, fields)
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
                ops[region] = _in_origin(delete, region)
        elif not _holds(put, wanted, item, region, fields):
            ops[region] = put
    return ops


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


@dataclass(slots=True)
class RepairReport:
    puts: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    unresolved: int = 0
    settled: int = 0  # differed when scanned, agreed when re-read (in flight): not written
    samples: list[dict[str, Any]] = field(default_factory=list)
    undecidable: list[dict[str, Any]] = field(default_factory=list)  # the first keys, JSON

    def note(self, region: str, op: PutVersion | DeleteVersion) -> None:
        counts = self.puts if isinstance(op, PutVersion) else self.deletes
        counts[region] = counts.get(region, 0) + 1
        if len(self.samples) < SAMPLES:
            self.samples.append(
                {
                    "region": region,
                    "action": "put" if isinstance(op, PutVersion) else "delete",
                    "key": key_object(op.key.to_attributes()),
                    "version": {
                        "timestamp": op.version.raw_timestamp or str(op.version.timestamp),
                        "origin": op.version.origin,
                    },
                }
            )

    def plan(
        self, key: Item, ops: Mapping[str, PutVersion | DeleteVersion] | None
    ) -> Mapping[str, PutVersion | DeleteVersion]:
        """Count ``resolve``'s answer for ``key`` and return the operations to write."""
        if ops is None:
            self.note_undecidable(key)
            return {}
        if not ops:  # every region agrees now: replication caught up since the scan
            self.settled += 1
        for region, op in ops.items():
            self.note(region, op)
        return ops

    def note_undecidable(self, key: Item) -> None:
        self.unresolved += 1
        if len(self.undecidable) < UNDECIDABLE_LISTED:
            self.undecidable.append(key_object(key))

    def as_json(self) -> dict[str, Any]:
        return {
            "puts": self.puts,
            "deletes": self.deletes,
            "stale": self.stale,
            "unresolved": self.unresolved,
            "settled": self.settled,
            "undecidable": self.undecidable,
            "samples": self.samples,
        }


class Repairer:
    """Applies ``resolve`` to batches of differing keys, reading every region's items and
    tombstones with strongly consistent batch reads."""

    def __init__(
        self,
        table: str,
        clients: Mapping[str, Any],
        writers: Mapping[str, Any],
        *,
        policy: ConflictPolicy,
        fields: SystemAttributes,
        tombstone_suffix: str,
        dry_run: bool,
        names: TableNames | None = None,
        rule: ResidencyRule | None = None,
    ) -> None:
        self.table, self.clients, self.writers = table, clients, writers
        self.names = names or TableNames()
        self.policy, self.fields = policy, fields
        self.tombstone_suffix, self.dry_run = tombstone_suffix, dry_run
        self.report = RepairReport()
        self.rule = rule

    def __call__(self, keys: Sequence[dict[str, Any]]) -> None:
        names = list(self.clients)
        items: dict[str, dict[ItemKey, Item]] = {}
        tombs: dict[str, dict[ItemKey, Tombstone]] = {}
        for region, client in self.clients.items():
            physical = self.names.physical(self.table, region)
            found = batch_get(client, physical, keys, region=region)
            items[region] = {ItemKey.from_attributes({n: i[n] for n in keys[0]}): i for i in found}
            remembered = batch_get(
                client, tombstone_table(physical, self.tombstone_suffix), keys, region=region
            )
            key_names = list(keys[0])
            tombs[region] = {
                tomb.key: tomb
                for tomb in (tombstone_from_item(t, key_names, self.fields) for t in remembered)
            }
        plans: dict[str, list[WriteOp]] = {name: [] for name in names}
        for raw in keys:
            key = ItemKey.from_attributes(raw)
            ops = resolve(
                key,
                {r: items[r].get(key) for r in names},
                {r: tombs[r].get(key) for r in names},
                policy=self.policy,
                fields=self.fields,
                rule=self.rule,
            )
            for region, op in self.report.plan(raw, ops).items():
                plans[region].append(op)
        if self.dry_run:
            return
        for region, planned in plans.items():
            if planned:
                result = self.writers[region].apply(self.table, planned)
                self.report.stale[region] = self.report.stale.get(region, 0) + result.stale
                if result.error is not None:
                    raise result.error
