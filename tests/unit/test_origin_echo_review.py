"""Application deletes in a version's origin region that the echo rule of core.plan
(the replicator's own removal there, covered by that region's remembered delete of its
own version) must not drop: interleavings through the real codec, planner, write
protocol and Replicator over in-memory regions whose streams record every change. The
strict xfails are one known limit, an application delete racing the replicator's removal
of the same content (identical REMOVE records; docs/concepts/guarantees.md says why it
stays within the cost model)."""

from __future__ import annotations

from typing import Any

import pytest

from dynamodb_replicator.core.errors import ThrottledError
from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, earlier_scheme_copy, n, s


def unread(regions: StreamRegions, region: str) -> list[dict[str, Any]]:
    """``region``'s unread stream records of the table, now marked read."""
    stream = regions.stores[region].stream
    records = [r for r in stream[regions.read[region] :] if r["table"] == TABLE]
    regions.read[region] = len(stream)
    return records


def process(
    regions: StreamRegions, region: str, records: list[dict[str, Any]], targets: list[str]
) -> int:
    """Replicate ``records`` of ``region`` to ``targets`` only; the echoes dropped."""
    result = regions.replicators[region].process(TABLE, records, from_json=False, regions=targets)
    assert result.failed_sequence() is None, result
    return result.echoes


def a_everywhere_then_deleted_in_eu(regions: StreamRegions, k: ItemKey) -> None:
    """eu-west-1 writes A at T, every region holds it, then eu-west-1 deletes it (unread)."""
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("A")})
    regions.quiesce()
    regions.delete(EU, k)


def rewrite_and_regress_e_in_eu(regions: StreamRegions, k: ItemKey) -> None:
    """eu-west-1 writes E at T again and then, its clock behind, regresses it to T - 2
    (its record asks every region to restore E)."""
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.update(EU, k, **{FIELDS.timestamp: n(T - 2), "content": s("late")})


def restore_into_eu(regions: StreamRegions, k: ItemKey) -> None:
    """ap-southeast-1's application regresses its copy of A (T@eu-west-1): its replicator
    restores A everywhere, eu-west-1 included, where k is absent (deleted, not yet read)."""
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 8), "content": s("ap")})
    regions.pump(AP)
    stored = regions.contents(k)[EU]
    assert stored == {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("A")}


def test_an_origin_delete_of_a_restored_copy_before_its_delete_is_read_deletes_everywhere(
    regions: StreamRegions,
) -> None:
    """eu-west-1 deletes A (record d); ap-southeast-1's restore of A lands in eu-west-1
    before d is read; eu-west-1's application deletes that copy (record a). d is read and
    applied (its tombstone written) before a is read: a is taken for an echo. Nothing
    must survive, and eu-west-1's later write of T must reach every region."""
    k = regions.key("k")
    a_everywhere_then_deleted_in_eu(regions, k)
    first = unread(regions, EU)
    restore_into_eu(regions, k)
    regions.delete(EU, k)
    assert process(regions, EU, first, [AP, EU, US]) == 0
    tombs = TombstoneTable(regions.stores[EU], FIELDS, SUFFIX).read(TABLE, [k])
    assert tombs[k].deleted_in == EU
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_replayed_origin_delete_after_its_copy_was_deleted_again_still_reaches_the_rest(
    regions: StreamRegions,
) -> None:
    """As above, but d is first applied in eu-west-1 alone (the other targets fail) and
    replayed only after eu-west-1's second delete (a, an echo) was read: the replay of d
    must still remove A and the restored copies in the other regions."""
    k = regions.key("k")
    a_everywhere_then_deleted_in_eu(regions, k)
    first = unread(regions, EU)
    restore_into_eu(regions, k)
    regions.delete(EU, k)
    assert process(regions, EU, first, [EU]) == 0
    rest = unread(regions, EU)
    process(regions, EU, rest, [AP, EU, US])
    assert process(regions, EU, first, [AP, US]) == 0
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_a_reinsert_and_redelete_of_one_timestamp_in_the_origin_deletes_everywhere(
    regions: StreamRegions,
) -> None:
    """eu-west-1 deletes A, writes E at T and deletes E; ap-southeast-1's restore of A
    lands in eu-west-1 between the delete and E. The tombstone of the first delete is
    written before the rest is read: E's delete is eu-west-1's own, never an echo."""
    k = regions.key("k")
    a_everywhere_then_deleted_in_eu(regions, k)
    first = unread(regions, EU)
    restore_into_eu(regions, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    process(regions, EU, first, [AP, EU, US])
    regions.pump(AP)
    regions.pump(US)
    regions.delete(EU, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1's delete of a restored copy of its own T, written after its earlier "
    "delete of T was applied there but before that copy was removed, is taken for an "
    "echo (core.plan._removed_by_the_replicator): the restore of its later write E of T "
    "survives everywhere",
)
def test_an_origin_delete_of_a_restored_copy_removes_its_earlier_rewrite_of_that_timestamp(
    regions: StreamRegions,
) -> None:
    """eu-west-1 deletes A (T, record d), writes E at T and, its clock behind, regresses
    E (its record g asks to restore E as (T, eu-west-1, g)). ap-southeast-1's restore of
    A lands in eu-west-1 over the regressed item (older than T) before eu-west-1's
    records are read; eu-west-1's application then deletes what it holds (record a). d is
    read in a batch of its own (its tombstone written in eu-west-1) before the rest. a is
    eu-west-1's delete of T at a, after E and its restore at g: nothing may survive."""
    k = regions.key("k")
    a_everywhere_then_deleted_in_eu(regions, k)
    first = unread(regions, EU)
    rewrite_and_regress_e_in_eu(regions, k)
    restore_into_eu(regions, k)
    regions.delete(EU, k)
    assert process(regions, EU, first, [AP, EU, US]) == 0
    tombs = TombstoneTable(regions.stores[EU], FIELDS, SUFFIX).read(TABLE, [k])
    assert tombs[k].deleted_in == EU
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1's delete of its own relabelled copy, landed after its earlier "
    "delete of T, is taken for an echo once that delete's tombstone is written: the "
    "restore of its later write E of T survives everywhere",
)
def test_an_origin_delete_of_its_own_relabel_removes_its_earlier_rewrite_of_that_timestamp(
    regions: StreamRegions,
) -> None:
    """eu-west-1's application alone: it updates the replica of T@ap-southeast-1 landing
    on T (record u: it wins, so its copy is relabelled (T, eu-west-1, u)), deletes k (d),
    writes E at T and regresses E (g). u is read in a batch of its own: the relabel lands
    over the regressed item. eu-west-1 deletes what it holds (a); d is read next in a
    batch of its own, then the rest. a is eu-west-1's delete of T after E: nothing may
    survive."""
    k = regions.key("k")
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "content": s("ap")})
    regions.quiesce()
    regions.update(EU, k, **{FIELDS.timestamp: n(T), "content": s("X")})
    relabel = unread(regions, EU)
    regions.delete(EU, k)
    delete = unread(regions, EU)
    rewrite_and_regress_e_in_eu(regions, k)
    process(regions, EU, relabel, [AP, EU, US])
    stored = regions.contents(k)[EU]
    assert stored == {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("X")}
    regions.delete(EU, k)
    assert process(regions, EU, delete, [AP, EU, US]) == 0
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


@pytest.mark.xfail(
    strict=True,
    reason="as with a restored copy of the current scheme: eu-west-1's delete of a "
    "restored copy of the earlier scheme (no seq) is taken for an echo, and the "
    "restore of its later write E of T survives everywhere",
)
def test_an_origin_delete_of_a_restored_earlier_scheme_copy_removes_its_rewrite_of_t(
    regions: StreamRegions,
) -> None:
    """Every region holds A, T@eu-west-1 as the earlier replicator left it (marked, no
    seq, no nonce). eu-west-1 deletes k (d), writes E at T and regresses E (g);
    ap-southeast-1's application regresses its copy of A, whose restore lands in
    eu-west-1 over the regressed item; eu-west-1 deletes what it holds (a). d is read in
    a batch of its own before the rest: nothing may survive."""
    k = regions.key("k")
    stores = list(regions.stores.values())
    earlier_scheme_copy(stores, k, EU, **{FIELDS.timestamp: n(T), "content": s("A")})
    regions.delete(EU, k)
    first = unread(regions, EU)
    rewrite_and_regress_e_in_eu(regions, k)
    restore_into_eu(regions, k)
    regions.delete(EU, k)
    assert process(regions, EU, first, [AP, EU, US]) == 0
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1's delete (a), no echo when its batch was planned, becomes one on "
    "the replay of its failed writes once its earlier delete of T (same batch) wrote "
    "its tombstone: the replay drops it and the restore of E survives everywhere",
)
def test_a_replayed_origin_delete_stays_no_echo_after_its_batchs_earlier_delete_landed(
    regions: StreamRegions,
) -> None:
    """As in the restored-copy case, but all of eu-west-1's records are read in one batch
    (no tombstone yet: a is no echo, it is sent). Every tombstone write after d's is
    throttled, so a fails and the batch is replayed from a; by then d's tombstone is in
    eu-west-1. The replay must still deliver a: nothing may survive."""
    k = regions.key("k")
    a_everywhere_then_deleted_in_eu(regions, k)
    rewrite_and_regress_e_in_eu(regions, k)
    restore_into_eu(regions, k)
    regions.delete(EU, k)
    records = unread(regions, EU)
    written: dict[str, int] = {}

    def throttle_later_tombstones(store: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}{SUFFIX}":
            written[store.name] = written.get(store.name, 0) + 1
            if written[store.name] > 1:
                raise ThrottledError("throttled", region=store.name)

    for store in regions.stores.values():
        store.before_call = throttle_later_tombstones
    result = regions.replicators[EU].process(TABLE, records, from_json=False)
    failed = result.failed_sequence()
    assert failed == records[-1]["dynamodb"]["SequenceNumber"]
    assert regions.contents(k)[EU] == {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    for store in regions.stores.values():
        store.before_call = lambda _store, _call: None
    replay = [r for r in records if r["dynamodb"]["SequenceNumber"] >= failed]
    process(regions, EU, replay, [AP, EU, US])
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}
