"""The write protocol on DynamoDB Local (the real store adapter and conditions): a late older
version after a delete, a delete racing an insert of the same key, duplicate replays. No
delete is undone, and every region ends at the winner."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import dynamo_store
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.model import Item, ItemKey, RegionSpec, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.policy import LastWriterWins, stored_version
from dynamodb_replicator.core.store import Store, StoreResult
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, create_table

US, EU = "us-east-1", "eu-west-1"
TABLE, SUFFIX = "Proto", ".__tombstones"


@dataclass
class Hooked:
    """The real store, with a hook before each item-table put (to let a race in)."""

    inner: Store
    before_put: Callable[[], None] = lambda: None
    puts: int = 0
    deletes: list[str] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.inner.region

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        if table == TABLE:
            self.puts += 1
            hook, self.before_put = self.before_put, lambda: None
            hook()
        return self.inner.put(table, item, condition)

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        self.deletes.append(table)
        return self.inner.delete(table, key, condition)

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        return self.inner.get(table, keys)


@pytest.fixture(scope="module")
def stores(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Hooked]]:
    specs = {r: RegionSpec(r, ddb_local.endpoint_url) for r in (US, EU)}
    for region, spec in specs.items():
        create_table(make_client("dynamodb", spec), TABLE, region=region)
    yield {r: Hooked(dynamo_store(spec)) for r, spec in specs.items()}


def writer(store: Store) -> StoreWriter:
    policy = LastWriterWins(FIELDS)
    return StoreWriter(WriteProtocol(store, policy, FIELDS, SystemClock(), SUFFIX, 3600))


def key(name: str) -> ItemKey:
    return ItemKey.from_attributes({"pk": {"S": name}})


def put(name: str, ts: str, origin: str, seq: str) -> PutVersion:
    image: Item = {"pk": {"S": name}, FIELDS.timestamp: {"N": ts}, "v": {"S": f"{ts}@{origin}"}}
    return PutVersion(key(name), Version.of(ts, origin), image, seq)


def delete(name: str, ts: str, origin: str, deleted_in: str, seq: str) -> DeleteVersion:
    return DeleteVersion(key(name), Version.of(ts, origin), deleted_in, seq)


def apply(store: Store, ops: list[WriteOp]) -> Any:
    w = writer(store)
    try:
        result = w.apply(TABLE, ops)
    finally:
        w.close()
    assert result.failed_sequence is None, result.error
    return result


def held(store: Hooked, name: str) -> Version | None:
    found = store.get(TABLE, [key(name)]).get(key(name))
    return stored_version(found, store.region, FIELDS)


def test_a_late_older_version_after_a_delete_writes_nothing(stores: dict[str, Hooked]) -> None:
    eu = stores[EU]
    apply(eu, [put("late", "5", US, "1")])
    apply(eu, [delete("late", "5", US, US, "2")])
    before = eu.puts
    result = apply(eu, [put("late", "3", US, "3")])
    assert (result.applied, result.stale) == (0, 1)
    assert eu.puts == before  # refused by the tombstone read: no write at all
    assert held(eu, "late") is None


def test_a_delete_racing_an_insert_does_not_resurrect(stores: dict[str, Hooked]) -> None:
    """The delete of version 4 lands between the insert's tombstone read and its put."""
    eu = stores[EU]
    other = writer(stores[EU].inner)

    def delete_meanwhile() -> None:
        assert other.apply(TABLE, [delete("race", "4", US, US, "9")]).failed_sequence is None

    eu.before_put = delete_meanwhile
    try:
        result = apply(eu, [put("race", "3", US, "1")])
    finally:
        other.close()
    assert held(eu, "race") is None, "the insert undid the delete"
    assert (result.applied, result.stale) == (0, 1)
    # us-east-1's own later delete is no conflict: only another region's version is one.
    assert result.conflicts == ()


def test_duplicate_replays_in_any_order_end_at_the_winner(stores: dict[str, Hooked]) -> None:
    ops: list[WriteOp] = [
        put("dup", "2", US, "1"),
        put("dup", "6", EU, "2"),
        delete("dup", "6", EU, EU, "3"),
        put("dup", "7", US, "4"),
        put("gone", "1", US, "5"),
        delete("gone", "1", US, US, "6"),
    ]
    us, eu = stores[US], stores[EU]
    for op in reversed(ops):  # US gets every write twice, newest first
        apply(us, [op])
        apply(us, [op])
    apply(eu, ops)  # EU gets them in order, then the whole batch replayed
    apply(eu, ops)
    for store in (us, eu):
        assert held(store, "dup") == Version.of("7", US)
        assert held(store, "gone") is None
