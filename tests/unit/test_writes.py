"""The write protocol step by step on an in-memory store: which calls it makes (the cost
model: one conditional write per put, two per delete, one in the deleting region) and
the interleavings the module docstring argues about."""

from __future__ import annotations

import logging

import pytest

from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import DeleteUnversioned, DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins, stored_version
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import Outcome, WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE, TOMBS = "T", "T.__tombstones"
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
HERE, THERE = "eu-west-1", "us-east-1"


def protocol(store: MemoryStore, *, prefetch: bool = True) -> WriteProtocol:
    policy = LastWriterWins(FIELDS)
    return WriteProtocol(store, policy, FIELDS, ManualClock(100.0), ".__tombstones", 60, prefetch)


def writer(store: MemoryStore, *, prefetch: bool = True) -> StoreWriter:
    """A writer; ``prefetch=False`` skips P0, so a late put lands and must be settled."""
    options = WriterOptions(max_in_flight=2, backoff=Backoff(base=0.0))
    return StoreWriter(protocol(store, prefetch=prefetch), options)


def put(timestamp: str, *, seq: str = "1") -> PutVersion:
    image: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": timestamp}, "v": {"S": "x"}}
    return PutVersion(KEY, Version.of(timestamp, THERE), image, seq)


def delete(
    timestamp: str, deleted_in: str = THERE, seq: str = "2", origin: str = THERE
) -> DeleteVersion:
    return DeleteVersion(KEY, Version.of(timestamp, origin), deleted_in, seq)


def writes(store: MemoryStore) -> list[str]:
    return [call for call in store.calls if not call.startswith("get")]


def test_an_insert_is_one_conditional_put() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    result = w.apply(TABLE, [put("5")])
    w.close()
    assert (result.applied, result.stale) == (1, 0)
    assert writes(store) == [f"put {TABLE}"]
    assert stored_version(store.item(TABLE, KEY), HERE, FIELDS) == Version.of("5", THERE)


def test_an_update_is_one_conditional_put_and_two_batched_reads() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [put("3")])
    store.calls.clear()
    result = w.apply(TABLE, [put("5", seq="2")])
    w.close()
    assert (result.applied, result.failed_sequence) == (1, None)
    assert store.calls == [f"get {TOMBS}", f"put {TABLE}", f"get {TOMBS}"]


def test_a_delete_in_a_target_is_two_writes() -> None:
    store = MemoryStore(HERE)
    p = protocol(store)
    p.put(TABLE, put("5"))
    store.calls.clear()
    assert p.delete(TABLE, delete("5")).outcome is Outcome.APPLIED
    assert writes(store) == [f"put {TOMBS}", f"delete {TABLE}"]
    assert store.item(TABLE, KEY) is None


def test_a_delete_in_its_own_region_with_the_item_gone_is_one_write() -> None:
    store = MemoryStore(HERE)
    assert protocol(store).delete(TABLE, delete("5", deleted_in=HERE)).outcome is Outcome.APPLIED
    assert writes(store) == [f"put {TOMBS}"]
    assert store.item(TOMBS, KEY) is not None


def test_a_late_insert_after_a_delete_is_stale_without_a_write() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [delete("5", deleted_in=HERE, origin=HERE)])
    store.calls.clear()
    result = w.apply(TABLE, [put("4")])
    w.close()
    assert (result.applied, result.stale) == (0, 1)
    assert result.conflicts[0].other_deleted  # a version written elsewhere: a conflict
    assert writes(store) == []


def test_a_put_meeting_its_own_regions_later_writes_is_no_conflict() -> None:
    """A put and the delete of its version in one batch (the put is taken back), and a
    late put meeting a later delete of its own region: stale, but nothing concurrent."""
    store = MemoryStore(HERE)
    w = writer(store)
    together = w.apply(TABLE, [put("5", seq="1"), delete("5", seq="2")])
    late = w.apply(TABLE, [put("4", seq="3")])
    w.close()
    assert store.item(TABLE, KEY) is None
    assert late.stale == 1
    assert (together.conflicts, late.conflicts) == ((), ())


def test_a_put_landing_after_a_delete_is_taken_back() -> None:
    """The delete happens between the tombstone read (P0) and the put (P1)."""
    store = MemoryStore(HERE)
    other = protocol(MemoryStore(HERE, tables=store.tables))

    def delete_meanwhile(s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and s.item(TOMBS, KEY) is None:
            other.delete(TABLE, delete("5"))

    store.before_call = delete_meanwhile
    w = writer(store)
    result = w.apply(TABLE, [put("4")])
    w.close()
    assert (result.applied, result.stale) == (0, 1)
    assert store.item(TABLE, KEY) is None


def test_a_lost_answer_on_an_insert_after_a_delete_still_settles() -> None:
    """The first put creates the item but its answer is lost; the retry finds its own
    version and must still look at the tombstone."""
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [delete("5")])
    lost: list[str] = []

    def lose_first(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and not lost:
            lost.append(call)
            raise UnreachableError("answer lost")

    store.after_apply = lose_first
    result = writer(store, prefetch=False).apply(TABLE, [put("4")])
    w.close()
    assert lost and result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def test_a_newer_put_survives_settling() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [delete("5")])
    result = writer(store, prefetch=False).apply(TABLE, [put("6")])
    w.close()
    assert result.applied == 1
    assert stored_version(store.item(TABLE, KEY), HERE, FIELDS) == Version.of("6", THERE)


def test_a_failed_settling_read_fails_the_put(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing is checkpointed past a put that might still resurrect a delete; the failure
    is logged with the key as a DynamoDB JSON object and the region."""
    store = MemoryStore(HERE)

    def no_tombstone_reads(_s: MemoryStore, call: str) -> None:
        if call == f"get {TOMBS}":
            raise UnreachableError("down")

    store.before_call = no_tombstone_reads
    w = StoreWriter(protocol(store), WriterOptions(backoff=Backoff(attempts=2, base=0.0)))
    with caplog.at_level(logging.ERROR):
        result = w.apply(TABLE, [put("4", seq="7")])
    w.close()
    assert result.failed_sequence == "7"
    assert isinstance(result.error, UnreachableError)
    (logged,) = [r.__dict__ for r in caplog.records if r.getMessage() == "write failed"]
    assert (logged["key"], logged["region"]) == ({"pk": {"S": "k"}}, HERE)


def test_a_restore_does_not_overwrite_a_later_write_of_the_same_version() -> None:
    """In one region: (3, b) X, a slow-clock (1, b), then (3, b) Z by the application. The
    restore of X (planned from the regression) arrives after Z: the later Z stays."""
    store = MemoryStore(HERE)
    z: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "3"}, "v": {"S": "Z"}}
    store.write_directly(TABLE, KEY, z)
    x: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "3"}, "v": {"S": "X"}}
    restore = PutVersion(KEY, Version.of("3", HERE), x, "5", strict=True)
    w = writer(store)
    result = w.apply(TABLE, [restore])
    w.close()
    assert result.stale == 1
    held = store.item(TABLE, KEY)
    assert held is not None and held["v"] == {"S": "Z"}


def test_a_delete_of_an_unversioned_item_spares_versioned_ones() -> None:
    legacy = MemoryStore(HERE)
    legacy.write_directly(TABLE, KEY, {"pk": {"S": "k"}, "v": {"S": "old"}})
    versioned = MemoryStore(THERE)
    versioned.write_directly(TABLE, KEY, {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "1"}})
    for store, applied in ((legacy, 1), (versioned, 0)):
        w = writer(store)
        result = w.apply(TABLE, [DeleteUnversioned(KEY, "3")])
        w.close()
        assert (result.applied, result.failed_sequence) == (applied, None)
    assert legacy.item(TABLE, KEY) is None
    assert versioned.item(TABLE, KEY) is not None


def test_a_lost_answer_on_a_restore_after_a_delete_still_settles() -> None:
    """Found by the fault schedule: a restore (strict) lands after a delete of its version,
    its answer is lost, and the retry is refused because its own version is there. It must
    still settle, or the deleted item stays."""
    store = MemoryStore(HERE)
    lost: list[str] = []

    def delete_first(s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and not lost:
            protocol(MemoryStore(HERE, tables=s.tables)).delete(TABLE, delete("3"))

    def lose_first(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and not lost:
            lost.append(call)
            raise UnreachableError("answer lost")

    x: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "3"}}
    restore = PutVersion(KEY, Version.of("3", THERE), x, "5", strict=True)
    store.before_call, store.after_apply = delete_first, lose_first
    w = writer(store, prefetch=False)
    result = w.apply(TABLE, [restore])
    w.close()
    assert lost and result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def test_an_application_write_over_a_landed_put_is_settled_too() -> None:
    """Found by the fault schedule: a late put lands on a deleted key (delete 7 remembered);
    the application then overwrites it with 4.5, older than the delete; a later delete (3)
    of the same batch finds 4.5 newer and leaves it. Settling must still run and remove it,
    as the application's write is older than a delete the region remembers."""
    store = MemoryStore(HERE)
    protocol(store).delete(TABLE, delete("7", seq="1"))
    local: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "4.5"}}

    def application_meanwhile(s: MemoryStore, call: str) -> None:
        if call == f"put {TOMBS}" and s.item(TABLE, KEY) is not None:
            s.write_directly(TABLE, KEY, local)

    store.before_call = application_meanwhile
    w = writer(store, prefetch=False)
    result = w.apply(TABLE, [put("2", seq="2"), delete("3", seq="3")])
    w.close()
    assert result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def test_a_replay_refused_by_the_tombstone_read_still_settles() -> None:
    """A put landed on a deleted key and its writer crashed before settling; the replay's
    tombstone read (P0) refuses it without a write, and must still remove what landed."""
    store = MemoryStore(HERE)
    protocol(store).delete(TABLE, delete("5", seq="1"))
    protocol(store).put(TABLE, put("4", seq="2"))  # P1 landed, then the process died
    assert store.item(TABLE, KEY) is not None
    w = writer(store)
    result = w.apply(TABLE, [put("4", seq="2")])
    w.close()
    assert result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def test_an_application_write_over_a_landed_put_is_removed_by_the_replay() -> None:
    """Found by the fault schedule: a put landed on a deleted key (delete 8), its answer was
    lost, the application then updated the item to 5.5 (older than the delete); the retry
    is refused (5.5 is newer than the put) and must still settle."""
    store = MemoryStore(HERE)
    protocol(store).delete(TABLE, delete("8", seq="1"))
    protocol(store).put(TABLE, put("5", seq="2"))
    store.write_directly(TABLE, KEY, {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5.5"}})
    w = writer(store, prefetch=False)
    result = w.apply(TABLE, [put("5", seq="2")])
    w.close()
    assert result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def update(timestamp: str, *, seq: str = "3") -> PutVersion:
    """A change of an item its source held at version 1 (P1u first, no P0)."""
    return PutVersion(
        KEY, Version.of(timestamp, THERE), put(timestamp).image, seq, put("1").version
    )


def test_an_update_of_a_present_item_is_one_conditional_put_and_one_read() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [put("3")])
    store.calls.clear()
    result = w.apply(TABLE, [update("5")])
    w.close()
    assert (result.applied, result.failed_sequence) == (1, None)
    assert store.calls == [f"put {TABLE}", f"get {TOMBS}"]  # no tombstone read before it


def test_an_update_of_an_absent_item_reads_the_tombstone_then_puts() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    result = w.apply(TABLE, [update("5")])
    w.close()
    assert (result.applied, result.failed_sequence) == (1, None)
    assert store.calls == [f"put {TABLE}", f"get {TOMBS}", f"put {TABLE}", f"get {TOMBS}"]
    assert stored_version(store.item(TABLE, KEY), HERE, FIELDS) == Version.of("5", THERE)


def test_an_update_after_a_newer_delete_shows_nothing_and_writes_nothing() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [put("3"), delete("7")])
    store.calls.clear()
    result = w.apply(TABLE, [update("5")])
    w.close()
    assert (result.applied, result.stale) == (0, 1)
    assert store.item(TABLE, KEY) is None
    # The present-only put failed (nothing there), the tombstone read refused the update.
    assert writes(store) == [f"put {TABLE}"] and store.item(TABLE, KEY) is None


def test_an_update_older_than_the_item_is_stale_at_once() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [put("9")])
    store.calls.clear()
    result = w.apply(TABLE, [update("5")])
    w.close()
    assert (result.applied, result.stale) == (0, 1)
    assert store.calls == [f"put {TABLE}", f"get {TOMBS}"]
    assert stored_version(store.item(TABLE, KEY), HERE, FIELDS) == Version.of("9", THERE)
