"""Settling a table's differing keys against the regions themselves: the keys read in
every region (``RegionReader``) and the runner's checkpoints as the tracker
(``aws.positions``), for ``ops.settle``."""

from __future__ import annotations

from collections.abc import Sequence

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.positions import StreamPositions
from dynamodb_replicator.core.codec import key_from_json
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes, TableNames
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.ops.diff import Row, rows_of
from dynamodb_replicator.ops.settle import Seen, SettleReport, settle

__all__ = ["RegionReader", "settle_table"]


class RegionReader:
    """Reads keys in every region with strongly consistent batch reads, as diff's rows
    (with each item's residency scope under ``rule``)."""

    def __init__(
        self,
        table: str,
        regions: Sequence[RegionSpec],
        key_names: Sequence[str],
        fields: SystemAttributes,
        names: TableNames | None = None,
        *,
        rule: ResidencyRule | None = None,
    ) -> None:
        self.table, self.key_names, self.fields = table, list(key_names), fields
        self.clients = {spec.name: make_client("dynamodb", spec) for spec in regions}
        self.names = names or TableNames()
        self.rule = rule

    def read(self, keys: Sequence[str]) -> dict[str, Seen]:
        raw = [key_from_json(k) for k in keys]
        found: dict[str, list[tuple[str, Row | None]]] = {k: [] for k in keys}
        for region, client in self.clients.items():
            physical = self.names.physical(self.table, region)
            items = batch_get(client, physical, raw, region=region)
            rows = {
                row.key: row
                for row in rows_of(items, region, self.key_names, self.fields, self.rule)
            }
            for key in keys:
                found[key].append((region, rows.get(key)))
        return {key: tuple(seen) for key, seen in found.items()}


def settle_table(
    table: str,
    keys: Sequence[str],
    *,
    regions: Sequence[RegionSpec],
    sources: Sequence[RegionSpec],
    key_names: Sequence[str],
    fields: SystemAttributes,
    state_table: str,
    timeout: float,
    names: TableNames | None = None,
    rule: ResidencyRule | None = None,
) -> SettleReport:
    """Settle ``table``'s differing ``keys`` among ``regions``, with the checkpoints of the
    runner replicating from ``sources`` when there are any; ``names``: the table's names
    per region; ``rule``: its residency rule."""
    reader = RegionReader(table, regions, key_names, fields, names, rule=rule)
    targets = [r.name for r in regions]
    positions = StreamPositions(table, state_table, sources, targets, names)
    if not positions.tracked():
        return settle(keys, reader, None, timeout=timeout)
    return settle(keys, reader, positions, timeout=timeout, idle=positions.unheld)
