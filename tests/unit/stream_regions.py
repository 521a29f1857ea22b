"""Regions whose in-memory tables emit ``NEW_AND_OLD_IMAGES`` stream records for every
change, the replicator's own writes included, and a real ``Replicator`` per region that
reads them in batches: echoes, restores and relabels go through the real codec, planner and
write protocol, as they do on DynamoDB."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.contract import Violation
from dynamodb_replicator.core.model import Item, ItemKey
from dynamodb_replicator.core.plan import WriteOp, user_image
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.ops.repair import resolve
from dynamodb_replicator.stamping import Stamper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE = "T"
SUFFIX = ".__tombstones"
AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
T = 1_700_000_000_000
# The replicator's clock (tombstone expiry only): fixed, the tests never reach it.
NOW = 1_000_000.0

__all__ = [
    "AP",
    "EU",
    "SUFFIX",
    "TABLE",
    "US",
    "StreamRegions",
    "T",
    "apply_ops",
    "content",
    "decide",
    "delete_missed_by",
    "delete_settled",
    "earlier_scheme_copy",
    "missed_by_all",
    "n",
    "repair",
    "resolve_among",
    "s",
    "written",
]


def n(value: int) -> dict[str, str]:
    """A DynamoDB Number attribute value."""
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    """A DynamoDB String attribute value."""
    return {"S": value}


def content(item: Item | None) -> dict[str, Any] | None:
    """What the application sees of an item: no replicator attributes."""
    return None if item is None else dict(user_image(item, FIELDS))


@dataclass
class StreamRegions:
    """Stores with streams, a replicator per source region, and each stream's read position."""

    names: list[str]
    stores: dict[str, MemoryStore] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    echoes: int = 0
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        policy = LastWriterWins(FIELDS)
        for name in self.names:
            self.stores[name] = MemoryStore(name, streams=True)
            self.read[name] = 0
        options = WriterOptions(max_in_flight=1, backoff=Backoff(attempts=2, base=0.0))
        writers = {
            name: StoreWriter(
                WriteProtocol(store, policy, FIELDS, ManualClock(NOW), SUFFIX, 3600), options
            )
            for name, store in self.stores.items()
        }
        self.replicators = {
            name: Replicator(
                source=name,
                writers=writers,
                tombstones=TombstoneTable(self.stores[name], FIELDS, SUFFIX),
                policy=policy,
                fields=FIELDS,
            )
            for name in self.names
        }

    def close(self) -> None:
        for replicator in self.replicators.values():
            replicator.close()

    def key(self, name: str) -> ItemKey:
        return ItemKey.from_attributes({"pk": {"S": name}})

    def put(self, region: str, key: ItemKey, **attributes: dict[str, Any]) -> None:
        """An application PutItem: the whole item."""
        item = {**key.to_attributes(), **attributes}
        self.stores[region].write_directly(TABLE, key, item)

    def update(self, region: str, key: ItemKey, **attributes: dict[str, Any]) -> None:
        """An application UpdateItem ``SET``: the named attributes, the others kept."""
        old = self.stores[region].item(TABLE, key) or key.to_attributes()
        self.stores[region].write_directly(TABLE, key, {**old, **attributes})

    def stamped_update(self, region: str, key: ItemKey, **attributes: dict[str, Any]) -> None:
        """The same UpdateItem made through a client that ``stamp()`` hooks: the request as
        the real Stamper rewrites it, then applied (its SET and REMOVE clauses)."""
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        sets = ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
        params: dict[str, Any] = {
            "UpdateExpression": f"SET {sets}",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {f":v{i}": v for i, v in enumerate(attributes.values())},
        }
        Stamper(ManualClock(NOW), FIELDS).update(params)
        names, values = params["ExpressionAttributeNames"], params["ExpressionAttributeValues"]
        item = dict(self.stores[region].item(TABLE, key) or key.to_attributes())
        clauses = re.split(r"\b(SET|REMOVE)\b", params["UpdateExpression"])[1:]
        for verb, body in zip(clauses[::2], clauses[1::2], strict=True):
            for part in filter(None, (p.strip() for p in body.split(","))):
                if verb == "SET":
                    name, value = (side.strip() for side in part.split("="))
                    item[names[name]] = values[value]
                else:
                    item.pop(names[part], None)
        self.stores[region].write_directly(TABLE, key, item)

    def delete(self, region: str, key: ItemKey) -> None:
        self.stores[region].write_directly(TABLE, key, None)

    def pump(self, region: str) -> int:
        """Replicate ``region``'s unread stream records (one batch); how many there were."""
        stream = self.stores[region].stream
        start = self.read[region]
        records = [r for r in stream[start:] if r["table"] == TABLE]
        self.read[region] = len(stream)
        if not records:
            return 0
        result = self.replicators[region].process(TABLE, records, from_json=False)
        assert result.failed_sequence() is None, result
        self.echoes += result.echoes
        self.violations.extend(result.violations)
        return len(records)

    def quiesce(self) -> None:
        """Pump every region until no stream has unread records."""
        for _ in range(50):
            if not sum(self.pump(name) for name in self.names):
                return
        raise AssertionError("the regions keep writing: replication does not settle")

    def contents(self, key: ItemKey) -> dict[str, dict[str, Any] | None]:
        return {name: content(store.item(TABLE, key)) for name, store in self.stores.items()}


def missed_by_all(regions: StreamRegions, region: str) -> None:
    """``region``'s unread records never reach anyone (they expired while it was cut off)."""
    regions.read[region] = len(regions.stores[region].stream)


def written(content: int, stamp: int = T) -> dict[str, Any]:
    """What the application sees of key ``k`` written at ``stamp`` with ``content``."""
    return {"pk": s("k"), FIELDS.timestamp: n(stamp), "content": n(content)}


def resolve_among(
    stores: Mapping[str, MemoryStore],
    k: ItemKey,
    names: Sequence[str],
    rule: ResidencyRule | None = None,
) -> dict[str, WriteOp] | None:
    """``repair``'s decision for ``k`` (ops.repair.resolve) from the items and tombstones of
    ``names`` (``repair --regions``) as read now (strongly consistent reads), under
    ``rule``: None when the key is left undecided."""
    items = {name: stores[name].item(TABLE, k) for name in names}
    tombs = {
        name: TombstoneTable(stores[name], FIELDS, SUFFIX).read(TABLE, [k]).get(k) for name in names
    }
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS, rule=rule)
    return None if ops is None else dict(ops)


def decide(
    regions: StreamRegions,
    k: ItemKey,
    names: Sequence[str] | None = None,
    rule: ResidencyRule | None = None,
) -> dict[str, WriteOp]:
    """``repair``'s writes for ``k`` from ``names`` (every region by default), with the
    residency ``rule`` if any."""
    names = regions.names if names is None else names
    return resolve_among(regions.stores, k, names, rule) or {}


def apply_ops(regions: StreamRegions, ops: dict[str, WriteOp]) -> None:
    """Writes ``ops`` with each region's writer (the repair's second half)."""
    options = WriterOptions(max_in_flight=1, backoff=Backoff(attempts=2, base=0.0))
    for name, op in ops.items():
        protocol = WriteProtocol(
            regions.stores[name], LastWriterWins(FIELDS), FIELDS, ManualClock(NOW), SUFFIX, 3600
        )
        result = StoreWriter(protocol, options).apply(TABLE, [op])
        assert result.error is None, result


def repair(regions: StreamRegions, k: ItemKey, rule: ResidencyRule | None = None) -> None:
    """``repair`` of ``k`` over every region: its decision applied with the real writer."""
    apply_ops(regions, decide(regions, k, rule=rule))


def delete_missed_by(regions: StreamRegions, k: ItemKey, deleter: str, missed: str) -> None:
    """eu-west-1 writes ``k`` (content 1 at T), replicated. ``deleter``'s application
    deletes it, and the delete reaches every region but ``missed``, which was cut off: its
    copy back and no tombstone (written directly, and marked read so these writes of the
    test are not replicated)."""
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    kept = regions.stores[missed].item(TABLE, k)
    regions.delete(deleter, k)
    regions.quiesce()
    regions.stores[missed].write_directly(TABLE, k, kept)
    regions.stores[missed].write_directly(TABLE + SUFFIX, k, None)
    missed_by_all(regions, missed)
    held = {name: written(1) if name == missed else None for name in regions.names}
    assert regions.contents(k) == held


def delete_settled(regions: StreamRegions, region: str, k: ItemKey) -> None:
    """``region``'s application deletes ``k``, replication settles: no region holds it."""
    regions.delete(region, k)
    regions.quiesce()
    assert regions.contents(k) == dict.fromkeys(regions.names)


def earlier_scheme_copy(
    stores: Sequence[MemoryStore], k: ItemKey, origin: str, **rest: Any
) -> None:
    """``k`` as the earlier replicator left it in ``stores``: a copy of ``origin``'s
    version, marked, with no nonce and no seq (in ``origin`` too: it restored it there)."""
    stamp = rest[FIELDS.timestamp]
    for store in stores:
        copy = {**k.to_attributes(), **rest, FIELDS.origin: s(origin), FIELDS.marker: stamp}
        store.table(TABLE)[k] = copy
