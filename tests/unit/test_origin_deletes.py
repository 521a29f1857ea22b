"""Deletes in a version's origin region against the replicator's own removals there:
interleavings through the real codec, planner, write protocol and Replicator over
in-memory regions whose streams record every change, the replicator's own removals
included. The REMOVE record of the replicator's own application of a region's delete in
that region is an echo (core.plan), not that region's later delete."""

from __future__ import annotations

from dynamodb_replicator.core.tombstones import TombstoneTable

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, n, s


def test_the_replicators_own_removal_in_the_origin_spares_a_later_reinsert(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes A at T, deletes it, writes E at T again and, its clock behind,
    regresses E (its record asks to restore E as (T, eu-west-1, r)). ap-southeast-1's
    regression restored A (T, eu-west-1, x) into eu-west-1 before eu-west-1's records
    were read, so applying eu-west-1's delete there removes that copy: a REMOVE record of
    the replicator's own, later in eu-west-1's stream than r. E is eu-west-1's latest
    write of T and must end everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("A")})
    regions.quiesce()
    regions.delete(EU, k)
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 8), "content": s("ap")})
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.update(EU, k, **{FIELDS.timestamp: n(T - 2), "content": s("late")})
    regions.pump(AP)
    assert regions.contents(k)[EU] == {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("A")}
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_relabelled_update_deleted_then_rewritten_in_one_batch_keeps_the_rewrite(
    regions: StreamRegions,
) -> None:
    """eu-west-1's application alone: it updates the replica of T@ap-southeast-1 landing
    exactly on T (it wins: the larger name, so its record relabels its own copy), deletes
    k, writes E at T again and, its clock behind, regresses E. All four records are read
    in one batch: the relabel lands in eu-west-1 before the delete is applied there, so
    the delete removes it by the replicator's hand. E is eu-west-1's latest write of T
    and must end everywhere."""
    k = regions.key("k")
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "content": s("ap")})
    regions.quiesce()
    regions.update(EU, k, **{FIELDS.timestamp: n(T), "content": s("X")})
    regions.delete(EU, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.update(EU, k, **{FIELDS.timestamp: n(T - 2), "content": s("late")})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_regions_own_writes_deletes_and_regressions_of_one_timestamp_keep_its_last_write(
    regions: StreamRegions,
) -> None:
    """eu-west-1's application alone, its clock jittering around T: it writes A at T,
    regresses it, writes B at T, deletes k, writes E at T and regresses E; all six
    records are read in one batch. By the rule, E (its last write of T; both regressions
    lose) ends everywhere."""
    k = regions.key("k")
    regions.update(EU, k, **{FIELDS.timestamp: n(T), "content": s("A")})
    regions.put(EU, k, **{FIELDS.timestamp: n(T - 2), "content": s("late-1")})
    regions.update(EU, k, **{FIELDS.timestamp: n(T), "content": s("B")})
    regions.delete(EU, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.update(EU, k, **{FIELDS.timestamp: n(T - 8), "content": s("late-2")})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_reinsert_after_deleting_an_earlier_scheme_copy_survives_a_restore_of_that_copy(
    regions: StreamRegions,
) -> None:
    """Every region holds A, T@eu-west-1 as the earlier replicator left it (marked, no seq,
    no nonce). eu-west-1 deletes k, writes E at T and regresses E; ap-southeast-1's
    application regresses its copy of A before any of eu-west-1's records is read. E is
    eu-west-1's latest write of T and must end everywhere."""
    k = regions.key("k")
    for store in regions.stores.values():
        store.table(TABLE)[k] = {
            **k.to_attributes(),
            FIELDS.timestamp: n(T),
            "content": s("A"),
            FIELDS.origin: s(EU),
            FIELDS.marker: n(T),
        }
    regions.delete(EU, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("E")})
    regions.put(EU, k, **{FIELDS.timestamp: n(T - 2), "content": s("late")})
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 8), "content": s("ap")})
    regions.pump(AP)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": s("E")}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_replayed_delete_of_a_regions_own_version_is_no_echo_there(
    regions: StreamRegions,
) -> None:
    """eu-west-1 deletes its own version of k; its record is applied in eu-west-1 only
    (its tombstone is written there) before the other targets fail, and the record is
    replayed for them. The replay's removed labels are covered by that tombstone, but it
    is eu-west-1's delete itself, not the replicator's later removal: it must reach them."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": s("A")})
    regions.quiesce()
    regions.delete(EU, k)
    stream = regions.stores[EU].stream
    records = [r for r in stream[regions.read[EU] :] if r["table"] == TABLE]
    regions.read[EU] = len(stream)
    first = regions.replicators[EU].process(TABLE, records, from_json=False, regions=[EU])
    assert first.failed_sequence() is None
    tombs = TombstoneTable(regions.stores[EU], FIELDS, SUFFIX).read(TABLE, [k])
    assert tombs[k].deleted_in == EU
    replay = regions.replicators[EU].process(TABLE, records, from_json=False, regions=[AP, US])
    assert replay.failed_sequence() is None and replay.echoes == 0
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}
