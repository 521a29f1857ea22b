"""Adversarial review of deletes in a version's origin region (h-eqv): interleavings
through the real codec, planner, write protocol and Replicator over in-memory regions
whose streams record every change, the replicator's own removals included. Each test
marked xfail(strict) reproduces a defect: it fails today and passes once it is fixed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .strategies import FIELDS
from .stream_regions import TABLE, StreamRegions

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
T = 1_700_000_000_000


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1 writes A at T, deletes it, re-inserts E at T and regresses E (restore "
    "(T, eu-west-1, r)); ap-southeast-1's restore of A lands in eu-west-1 first, and applying "
    "eu-west-1's delete removes that copy there: the replicator's own REMOVE record is not "
    "an echo (tombstone deleted in eu-west-1) and now carries its own seq > r, so it goes "
    "out as eu-west-1's delete of E: E lost everywhere (regression of c747ecc)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1 alone: a winning update that hit T@ap-southeast-1's marker, a delete, "
    "a re-insert E at T and a regression of E, read in one batch: the relabel lands before "
    "the delete is applied, the replicator's removal of it is not an echo (tombstone "
    "deleted in eu-west-1) and now carries its own seq > E's restore: E lost everywhere "
    "(regression of c747ecc)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1 alone: A at T (replicated), a regression (restore A as (T, eu, r1)), "
    "B at T, delete, E at T, a regression of E (restore E as (T, eu, r2)): the restore of A "
    "lands in eu-west-1 over the regressed item, applying the delete removes it there, and "
    "that REMOVE of the replicator's own goes out as eu-west-1's delete at a seq > r2: "
    "E lost everywhere (regression of c747ecc)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="eu-west-1 deletes its earlier-scheme copy of A (no seq), writes E at T, "
    "regresses E (restore (T, eu, r)); ap-southeast-1's regression restores A (T, eu, '') "
    "into eu-west-1 over the regressed item, applying the delete removes it there, and that "
    "REMOVE of the replicator's own goes out as eu-west-1's delete at a seq > r: E lost "
    "everywhere (before d9648d9 it failed too, through the seq-less tombstone)",
)
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
