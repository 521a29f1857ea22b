"""Adversarial review, round 2: interleavings against the write protocol (core/writes.py,
core/writer.py) and the planner (core/plan.py) that the first round's fixes leave open.

Each test drives the real code on in-memory stores (MemoryStore hooks let other writers,
or the application, slip in between two store calls) and states its interleaving. Each
ends with a region that diverged: a delete undone or never applied.
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.model import Change, Item, Operation, Version
from dynamodb_replicator.core.plan import plan_changes
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.testing.memory_store import MemoryStore

from .adversaries import (
    HERE,
    KEY,
    POLICY,
    SUFFIX,
    TABLE,
    TOMBS,
    A,
    B,
    another_process,
    delete,
    held,
    put,
    v,
    writer,
)
from .strategies import FIELDS


def replica_item(version: Version) -> dict[str, Any]:
    """The item as a replica write of ``version`` stores it."""
    return {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": version.raw_timestamp},
        FIELDS.origin: {"S": version.origin},
        FIELDS.marker: {"N": version.raw_timestamp},
    }


# --- 1. An equal-version delete in two regions: both REMOVE records become "echoes" ----------


def remove_record(seq: str, old: Item) -> dict[str, Any]:
    return {
        "eventName": "REMOVE",
        "dynamodb": {
            "Keys": {"pk": {"S": "k"}},
            "OldImage": dict(old),
            "SequenceNumber": seq,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_equal_version_deletes_in_two_regions_must_not_both_become_echoes() -> None:
    """The planner drops a REMOVE record of region S as an echo when S's tombstone says the
    delete came from elsewhere (``tomb.deleted_in != source``) and is not older. But D1
    overwrites a tombstone of the *same* version (``strict=False``), so ``deleted_in`` is
    whichever equal-version delete arrived last. Two regions that delete the same version
    (two users, a cleanup job in each region, TTL in each region...) can swap each other's
    ``deleted_in``; a replay then finds both deletes "echoes".

    Regions HERE, A, B hold version 5@HERE.
    1. The application deletes 5@HERE in HERE and in A (both REMOVE records carry 5@HERE).
    2. HERE's and A's replicators plan their record (no tombstone yet: not echoes).
    3. HERE -> HERE: tombstone (5@HERE, deleted_in HERE). A -> A: (5@HERE, deleted_in A).
       HERE -> A: A's tombstone becomes deleted_in HERE. A -> HERE: HERE's becomes
       deleted_in A. B is unreachable: both batches report their record failed for B.
    4. Each replicator replays its record for B (the runner's per-target checkpoint; the
       Lambda handler would replay the whole batch): the planner reads its own region's
       tombstone, finds deleted_in = the other region, version not newer: an echo, dropped.
       Both batches succeed; the checkpoints move past the deletes.
    B holds 5@HERE forever; HERE and A hold nothing.
    """
    version = v("5", HERE)
    stores = {name: MemoryStore(name) for name in (HERE, A, B)}
    stores[HERE].write_directly(TABLE, KEY, {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5"}})
    for name in (A, B):
        stores[name].write_directly(TABLE, KEY, replica_item(version))
    records = {
        HERE: remove_record("10", stores[HERE].item(TABLE, KEY) or {}),
        A: remove_record("20", stores[A].item(TABLE, KEY) or {}),
    }
    for name in (HERE, A):  # step 1: both applications delete
        stores[name].write_directly(TABLE, KEY, None)

    def unreachable(_s: MemoryStore, _call: str) -> None:
        raise UnreachableError("B is down")

    stores[B].before_call = unreachable
    writers = {name: writer(store, attempts=2) for name, store in stores.items()}

    # Steps 2-3: both plan before any cross delivery (what Replicator.process does).
    plans = {
        source: plan_changes(
            [
                Change(
                    Operation.DELETE,
                    KEY,
                    records[source]["dynamodb"]["SequenceNumber"],
                    version,
                    old_image=records[source]["dynamodb"]["OldImage"],
                )
            ],
            source=source,
            regions=[HERE, A, B],
            policy=POLICY,
            fields=FIELDS,
            tombstones=TombstoneTable(stores[source], FIELDS, SUFFIX).read(TABLE, [KEY]),
        )
        for source in (HERE, A)
    }
    assert plans[HERE].echoes == plans[A].echoes == 0
    for source, target in ((HERE, HERE), (A, A), (HERE, A), (A, HERE), (HERE, B), (A, B)):
        result = writers[target].apply(TABLE, plans[source].writes[target])
        assert (result.failed_sequence is None) == (target != B)

    # Step 4: B is back; each source replays its record for B.
    stores[B].before_call = lambda _s, _c: None
    echoes = 0
    for source in (HERE, A):
        replicator = Replicator(
            source=source,
            writers=writers,
            tombstones=TombstoneTable(stores[source], FIELDS, SUFFIX),
            policy=POLICY,
            fields=FIELDS,
        )
        replay = replicator.process(TABLE, [records[source]], from_json=False, regions=[B])
        assert replay.failed_sequence() is None
        echoes += replay.echoes
    for w in writers.values():
        w.close()
    assert stores[HERE].item(TABLE, KEY) is None and stores[A].item(TABLE, KEY) is None
    assert stores[B].item(TABLE, KEY) is None, (
        f"5@{HERE} was deleted (in {HERE} and {A}) but {B} holds it; "
        f"{echoes} replayed deletes were dropped as echoes"
    )


# --- 2. An application write over a landed, not yet settled put, then a retry -------------


def late_put_lands_after_delete(store: MemoryStore, other: StoreWriter) -> list[str]:
    """Hook: before the first P1, another replicator applies B's delete of 3@B (after P0
    read no tombstone), so the put lands on a deleted key."""
    done: list[str] = []

    def delete_between_p0_and_p1(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and not done:
            done.append(call)
            assert other.apply(TABLE, [delete(v("3", B), B, "90")]).failed_sequence is None

    store.before_call = delete_between_p0_and_p1
    return done


SKEWED: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "2"}}  # 2@HERE: 1@A < 2 < 3@B


def test_a_lost_answer_retry_that_finds_an_application_write_must_still_settle() -> None:
    """The docstring: a lost answer's retry "either finds V ... or a newer put that landed
    since, which settles itself". An *application* write in the target does not settle
    itself, and the planner checks tombstones only for inserts (old image absent): an
    update of the resurrected item is never checked against the delete.

    1. A's put 1@A into HERE: P0 reads no tombstone.
    2. Before P1, B's delete of 3@B is applied in HERE (D1, D2: nothing to delete).
    3. P1 creates 1@A (a resurrection pending its settle); the answer is lost.
    4. The application in HERE (its clock behind B's) updates the item it sees: 2@HERE.
    5. The retry of 1@A is refused (2@HERE is newer) and is not 1@A itself: STALE, not
       unsettled; no settle. The batch succeeds.
    6. The planner sees HERE's MODIFY (old 1@A, new 2@HERE): an update, not an insert, so
       no tombstone check; it sends 2@HERE to the other regions (which drop it: they
       remember 3@B) and nothing to HERE.
    HERE holds 2@HERE for ever although a delete of 3@B (newer) happened; others hold nothing.
    """
    store = MemoryStore(HERE)
    other = another_process(store)
    sneaked = late_put_lands_after_delete(store, other)
    lost: list[str] = []

    def lose_answer_then_app_writes(s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and not lost:
            lost.append(call)
            s.write_directly(TABLE, KEY, SKEWED)
            raise UnreachableError("answer lost")

    store.after_apply = lose_answer_then_app_writes
    w = writer(store)
    result = w.apply(TABLE, [put(v("1", A), "1")])
    # The application's MODIFY record, planned as the replicator does in HERE.
    change = Change(
        Operation.PUT,
        KEY,
        "50",
        v("2", HERE),
        image=SKEWED,
        old_image=replica_item(v("1", A)),
        old_version=v("1", A),
    )
    plan = plan_changes(
        [change],
        source=HERE,
        regions=[HERE, A, B],
        policy=POLICY,
        fields=FIELDS,
        tombstones=TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [KEY]),
    )
    store.before_call = store.after_apply = lambda _s, _c: None
    assert w.apply(TABLE, plan.writes[HERE]).failed_sequence is None
    w.close()
    other.close()
    assert sneaked and lost and result.failed_sequence is None
    assert held(store) is None, f"a delete of 3@{B} happened but {HERE} holds {held(store)}"


def test_a_put_whose_settle_failed_and_replayed_after_an_application_write_must_settle() -> None:
    """The same hole across a failed settle (throttled past its retries, or the deadline
    cut between P1 and P2): the put is correctly reported failed, but the application
    updates the visible, resurrected item before the replay, and the replay's P0 (or its
    refused P1) makes no settle.

    1-3. As above, but P1's answer arrives; the settling read is throttled until the writer
       gives up: the batch reports 1@A failed (the checkpoint stays before it).
    4. The application in HERE updates the item: 2@HERE (older than the delete 3@B).
    5. The replay of 1@A: P0 finds 3@B remembered: STALE without a write. Success.
    HERE holds 2@HERE although 3@B was deleted.
    """
    store = MemoryStore(HERE)
    other = another_process(store)
    sneaked = late_put_lands_after_delete(store, other)
    first_hook = store.before_call
    tomb_reads: list[str] = []

    def settle_throttled(s: MemoryStore, call: str) -> None:
        first_hook(s, call)
        if call == f"get {TOMBS}":
            tomb_reads.append(call)
            if len(tomb_reads) > 1:  # the first is P0; every settling read fails
                raise ThrottledError("throttled", region=HERE)

    store.before_call = settle_throttled
    w = writer(store, attempts=3)
    first = w.apply(TABLE, [put(v("1", A), "1")])
    assert sneaked and first.failed_sequence == "1"
    assert held(store) == v("1", A)  # resurrected, pending its settle
    store.before_call = lambda _s, _c: None
    store.write_directly(TABLE, KEY, SKEWED)
    replay = w.apply(TABLE, [put(v("1", A), "1")])
    w.close()
    other.close()
    assert replay.failed_sequence is None
    assert held(store) is None, f"a delete of 3@{B} happened but {HERE} holds {held(store)}"
