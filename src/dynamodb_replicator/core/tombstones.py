"""Tombstones as items: how a region's memory of a delete is stored and read back. Pure.

A tombstone item has the deleted item's key, the deleted version (``__timestamp``, and
``__originRegion`` with the marker equal to the timestamp, so the conflict policy's
conditions read it as that version), the region whose delete it was, and an expiry for TTL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.model import Item, ItemKey, SystemAttributes, Tombstone, Version
from dynamodb_replicator.core.store import Store

__all__ = ["TombstoneTable", "tombstone_from_item", "tombstone_item"]


def tombstone_item(
    key: ItemKey, version: Version, deleted_in: str, expires_at: int, fields: SystemAttributes
) -> dict[str, Any]:
    """The tombstone table item remembering a delete of ``version`` of ``key``."""
    item: dict[str, Any] = key.to_attributes()
    item[fields.timestamp] = {"N": version.raw_timestamp}
    item[fields.origin] = {"S": version.origin}
    item[fields.marker] = {"N": version.raw_timestamp}
    if version.seq:
        item[fields.origin_seq] = {"S": version.seq}
    item[fields.deleted_in] = {"S": deleted_in}
    item[fields.expires_at] = {"N": str(expires_at)}
    return item


def tombstone_from_item(
    item: Mapping[str, Any] | Item, key_names: Sequence[str], fields: SystemAttributes
) -> Tombstone:
    """A tombstone table item -> Tombstone."""
    key = ItemKey.from_attributes({n: item[n] for n in key_names})
    seq = item.get(fields.origin_seq, {}).get("S", "")
    version = Version.of(item[fields.timestamp]["N"], item[fields.origin]["S"], str(seq))
    return Tombstone(key, version, item[fields.deleted_in]["S"])


@dataclass(frozen=True, slots=True)
class TombstoneTable:
    """The deletes one region remembers, read through its store (a TombstoneReader)."""

    store: Store
    fields: SystemAttributes
    suffix: str

    def read(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Tombstone]:
        """Tombstones of ``keys`` (one batched, strongly consistent read)."""
        if not keys:
            return {}
        names = next(iter(keys)).names()
        found = self.store.get(tombstone_table(table, self.suffix), keys)
        return {key: tombstone_from_item(item, names, self.fields) for key, item in found.items()}
