"""Repair at work: reads each batch of differing keys in every region (items and
tombstones, strongly consistent), decides each key (``ops.repair.resolve``), counts the
decisions and writes them with the replicator's conditional writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.core.codec import key_object
from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.model import Item, ItemKey, SystemAttributes, TableNames, Tombstone
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.policy import ConflictPolicy
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.tombstones import tombstone_from_item
from dynamodb_replicator.ops.repair import resolve, unread_deleters

__all__ = ["RepairReport", "Repairer"]

SAMPLES = 5
UNDECIDABLE_LISTED = 100


@dataclass(slots=True)
class RepairReport:
    puts: dict[str, int] = field(default_factory=dict)
    deletes: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    # Keys written whose write the conditions refused though the decision still needs it.
    refused: int = 0
    refused_keys: list[dict[str, Any]] = field(default_factory=list)  # the first, JSON
    unresolved: int = 0
    settled: int = 0  # differed when scanned, agreed when re-read (in flight): not written
    samples: list[dict[str, Any]] = field(default_factory=list)
    undecidable: list[dict[str, Any]] = field(default_factory=list)  # the first keys, JSON
    # Regions not read that tombstones of undecided keys name (``unread_deleters``).
    read_with: set[str] = field(default_factory=set)

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
        self,
        key: Item,
        ops: Mapping[str, PutVersion | DeleteVersion] | None,
        unread: Sequence[str] = (),
    ) -> Mapping[str, PutVersion | DeleteVersion]:
        """Count ``resolve``'s answer for ``key`` and return the operations to write;
        ``unread``: the regions its tombstones name that were not read."""
        if ops is None:
            self.note_undecidable(key)
            self.read_with.update(unread)
            return {}
        if not ops:  # every region agrees now: replication caught up since the scan
            self.settled += 1
        for region, op in ops.items():
            self.note(region, op)
        return ops

    def note_refused(self, key: Item) -> None:
        self.refused += 1
        if len(self.refused_keys) < UNDECIDABLE_LISTED:
            self.refused_keys.append(key_object(key))

    def note_undecidable(self, key: Item) -> None:
        self.unresolved += 1
        if len(self.undecidable) < UNDECIDABLE_LISTED:
            self.undecidable.append(key_object(key))

    def as_json(self) -> dict[str, Any]:
        return {
            "puts": self.puts,
            "deletes": self.deletes,
            "stale": self.stale,
            "refused": self.refused,
            "refused_keys": self.refused_keys,
            "unresolved": self.unresolved,
            "settled": self.settled,
            "undecidable": self.undecidable,
            "read_with": sorted(self.read_with),
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
        items, tombs = self._read(keys)
        plans: dict[str, list[WriteOp]] = {name: [] for name in names}
        decided: dict[ItemKey, tuple[dict[str, Any], Mapping[str, PutVersion | DeleteVersion]]] = {}
        for raw in keys:
            key = ItemKey.from_attributes(raw)
            key_tombs = {r: tombs[r].get(key) for r in names}
            ops = self._resolve(key, items, tombs)
            unread = unread_deleters(key_tombs) if ops is None else []
            planned = self.report.plan(raw, ops, unread)
            if planned:
                decided[key] = (raw, planned)
            for region, op in planned.items():
                plans[region].append(op)
        if self.dry_run:
            return
        stale: dict[str, frozenset[ItemKey]] = {}
        for region, planned_ops in plans.items():
            if planned_ops:
                result = self.writers[region].apply(self.table, planned_ops)
                self.report.stale[region] = self.report.stale.get(region, 0) + result.stale
                if result.stale:
                    # A writer that does not say which keys: all of them are checked.
                    stale[region] = result.stale_keys or frozenset(op.key for op in planned_ops)
                if result.error is not None:
                    raise result.error
        if stale:
            self._check_refused(decided, stale)

    def _check_refused(
        self,
        decided: Mapping[ItemKey, tuple[dict[str, Any], Mapping[str, PutVersion | DeleteVersion]]],
        stale: Mapping[str, frozenset[ItemKey]],
    ) -> None:
        """The writes in ``stale`` (region -> keys) were refused: most found a newer
        version (live traffic, or replication got there first). Re-read those keys: one
        whose decision still asks a region that refused its write for that write (the same
        kind and target) was refused by the conditions though repair needs it, and stays
        different (``RepairReport.refused``). Keys whose writes all landed are not re-read:
        live traffic may have changed them since, which is no refusal."""
        rechecked = {k: decided[k] for k in decided if any(k in keys for keys in stale.values())}
        if not rechecked:
            return
        items, tombs = self._read([raw for raw, _ in rechecked.values()])
        for key, (raw, sent) in rechecked.items():
            again = self._resolve(key, items, tombs) or {}
            if any(
                key in stale.get(region, ()) and _same_write(again.get(region), op, self.fields)
                for region, op in sent.items()
            ):
                self.report.note_refused(raw)

    def _resolve(
        self,
        key: ItemKey,
        items: Mapping[str, Mapping[ItemKey, Item]],
        tombs: Mapping[str, Mapping[ItemKey, Tombstone]],
    ) -> dict[str, PutVersion | DeleteVersion] | None:
        return resolve(
            key,
            {r: items[r].get(key) for r in self.clients},
            {r: tombs[r].get(key) for r in self.clients},
            policy=self.policy,
            fields=self.fields,
            rule=self.rule,
        )

    def _read(
        self, keys: Sequence[dict[str, Any]]
    ) -> tuple[dict[str, dict[ItemKey, Item]], dict[str, dict[ItemKey, Tombstone]]]:
        """Every region's items and tombstones of ``keys`` (strongly consistent)."""
        items: dict[str, dict[ItemKey, Item]] = {}
        tombs: dict[str, dict[ItemKey, Tombstone]] = {}
        key_names = list(keys[0])
        for region, client in self.clients.items():
            physical = self.names.physical(self.table, region)
            found = batch_get(client, physical, keys, region=region)
            items[region] = {
                ItemKey.from_attributes({n: i[n] for n in key_names}): i for i in found
            }
            remembered = batch_get(
                client, tombstone_table(physical, self.tombstone_suffix), keys, region=region
            )
            tombs[region] = {
                tomb.key: tomb
                for tomb in (tombstone_from_item(t, key_names, self.fields) for t in remembered)
            }
        return items, tombs


def _same_write(
    again: PutVersion | DeleteVersion | None,
    sent: PutVersion | DeleteVersion,
    fields: SystemAttributes,
) -> bool:
    """Does ``again`` ask for the write ``sent`` was: the same kind, of the same timestamp
    and origin (a put: of the same content)? Not the seq of its label: it only
    orders contents of one timestamp and origin, and the re-read may label the same write
    otherwise (its delete's D1 landed when D2 was refused, and a tombstone whose stand-in
    reading depends on a region not read is ranked above; a copy of the same content
    landed meanwhile with another label), while a newer version that got there first
    changes the timestamp, the origin or the content."""
    if again is None or type(again) is not type(sent):
        return False
    if (again.version.timestamp, again.version.origin) != (
        sent.version.timestamp,
        sent.version.origin,
    ):
        return False
    if isinstance(again, PutVersion) and isinstance(sent, PutVersion):
        return again.digest(fields) == sent.digest(fields)
    return True
