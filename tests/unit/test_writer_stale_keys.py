"""A writer names the keys of the writes it counts stale (``TargetResult.stale_keys``),
settling's take-backs included, and no other: repair's operations all carry one sequence
number, so ``settled`` cannot tell them apart and repair re-checks only these keys."""

from __future__ import annotations

from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE, TOMBS = "T", "T.__tombstones"
HERE, THERE = "eu-west-1", "us-east-1"


def _key(name: str) -> ItemKey:
    return ItemKey.from_attributes({"pk": {"S": name}})


def _protocol(store: MemoryStore) -> WriteProtocol:
    return WriteProtocol(
        store, LastWriterWins(FIELDS), FIELDS, ManualClock(100.0), ".__tombstones", 60
    )


def _writer(store: MemoryStore) -> StoreWriter:
    return StoreWriter(_protocol(store), WriterOptions(max_in_flight=2, backoff=Backoff(base=0.0)))


def _put(name: str, timestamp: str) -> PutVersion:
    image: Item = {"pk": {"S": name}, FIELDS.timestamp: {"N": timestamp}, "v": {"S": "x"}}
    return PutVersion(_key(name), Version.of(timestamp, THERE), image, NO_SEQUENCE)


def _delete(name: str, timestamp: str) -> DeleteVersion:
    return DeleteVersion(_key(name), Version.of(timestamp, THERE), THERE, NO_SEQUENCE)


def test_the_keys_of_stale_puts_and_deletes_are_named_and_no_landed_one() -> None:
    store = MemoryStore(HERE)
    w = _writer(store)
    w.apply(TABLE, [_put("older", "9"), _put("kept", "9"), _put("gone", "1")])
    result = w.apply(
        TABLE,
        [
            _put("new", "5"),  # lands
            _put("older", "5"),  # stale: 9 is there
            _delete("kept", "5"),  # stale: D2 refused, 9 is newer
            _delete("gone", "5"),  # lands
        ],
    )
    w.close()
    assert (result.applied, result.stale) == (2, 2)
    assert result.stale_keys == {_key("older"), _key("kept")}


def test_a_put_that_landed_and_was_taken_back_is_named() -> None:
    """A delete lands between the tombstone read (P0) and the put (P1): the put lands and
    settling takes it back; another key's put of the same batch (the same sequence number,
    as repair's are) lands and stays."""
    store = MemoryStore(HERE)
    other = _protocol(MemoryStore(HERE, tables=store.tables))
    raced = _key("raced")

    def delete_meanwhile(s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and s.item(TOMBS, raced) is None:
            other.delete(TABLE, _delete("raced", "5"))

    store.before_call = delete_meanwhile
    w = _writer(store)
    result = w.apply(TABLE, [_put("raced", "4"), _put("calm", "4")])
    w.close()
    # The state the test is named after: the raced put landed and is gone again.
    assert store.item(TABLE, raced) is None and store.item(TABLE, _key("calm")) is not None
    assert f"delete {TABLE}" in store.calls  # P3: settling removed it
    assert (result.applied, result.stale, result.stale_keys) == (1, 1, frozenset({raced}))
