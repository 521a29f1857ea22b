"""Review of equal versions (issue 29): interleavings that should converge to the rule's
winner, content included, through the real codec, planner, write protocol and Replicator
over in-memory regions whose streams record every change. Each test marked xfail(strict)
reproduces a defect: it fails today and passes once the defect is fixed.

The three that remain are one limit (an application update that lands exactly on a
replica's timestamp, keeps the replica's marker and wins is removed by a delete its
conditions read as covering the replica): no conditional write can tell that update from
the replica, so it is kept here as a known limit (docs/concepts/guarantees.md, "Under
these assumptions", says why). The updates here do not go through ``stamp()``, which drops
the marker: the same interleavings through it converge
(test_stamped_updates_on_a_replicas_timestamp.py)."""

from __future__ import annotations

import pytest

from dynamodb_replicator.core.model import Version
from dynamodb_replicator.core.tombstones import tombstone_item

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, n, s
from .stream_regions import repair as _repair


def test_repair_restores_the_later_content_of_one_version(regions: StreamRegions) -> None:
    """eu-west-1 writes k twice at T; us-east-1 missed the second (its records expired
    while it was unreachable). ``repair`` must bring the later content everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    regions.read[EU] = len(regions.stores[EU].stream)  # the record never reaches anyone
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k)[EU] == winner
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


@pytest.mark.xfail(
    strict=True,
    reason="in us-east-1 the delete of T@eu-west-1 removes the winning update that hit the "
    "replica's marker (conditions read it as T@eu-west-1); the REMOVE record then reads as "
    "us-east-1's own delete of (T, us-east-1) and removes the winner everywhere",
)
def test_a_delete_of_a_replica_does_not_remove_an_update_that_hit_its_marker_and_won(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k at T; us-east-1's application updates its replica landing exactly
    on T (the larger region name: its write wins over T@eu-west-1); ap-southeast-1 deletes
    its replica of T@eu-west-1 before us-east-1's record is replicated. The delete of
    T@eu-west-1 is older than T@us-east-1: us-east-1's content must survive everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    regions.update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.delete(AP, k)
    regions.pump(AP)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


@pytest.mark.xfail(
    strict=True,
    reason="the same, with the delete made in the replica's own region: us-east-1's REMOVE "
    "record of the winning update again reads as its own delete and removes it everywhere",
)
def test_an_origin_delete_does_not_remove_an_update_that_hit_its_marker_and_won(
    regions: StreamRegions,
) -> None:
    """As above, but eu-west-1 itself deletes T@eu-west-1 (a delete of what it wrote)."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    regions.update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.delete(EU, k)
    regions.pump(EU)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_delete_then_a_reinsert_of_one_timestamp_in_one_region_keeps_the_reinsert(
    regions: StreamRegions,
) -> None:
    """docs/concepts/guarantees.md: 'A delete followed by a re-insert of the same timestamp in one
    region keeps the re-insert'. eu-west-1 writes k at T, deletes it, writes it at T again."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.pump(EU)
    regions.delete(EU, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_delete_in_the_origin_region_costs_two_writes_per_target(
    regions: StreamRegions,
) -> None:
    """Cost model: a replicated delete is 2 writes per target (tombstone, item), 1 in the
    deleting region (its tombstone); echoes write nothing."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    for store in regions.stores.values():
        store.calls.clear()
    regions.delete(EU, k)
    regions.quiesce()
    writes = {
        name: sum(1 for call in store.calls if not call.startswith("get"))
        for name, store in regions.stores.items()
    }
    assert writes == {AP: 2, EU: 1, US: 2}


def test_a_tombstone_of_the_earlier_scheme_still_stops_a_late_copy(
    regions: StreamRegions,
) -> None:
    """Before the upgrade: eu-west-1 wrote k at T; ap-southeast-1 deleted it, and the
    earlier replicator remembered the delete of T@eu-west-1 everywhere (no seq). After the
    upgrade, eu-west-1's put record is delivered again (at-least-once: a consumer that was
    behind, a retried batch). The delete must not be undone."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.stores[EU].table(TABLE).pop(k)  # the earlier replicator's delete (its echo dropped)
    deleted = Version.of(str(T), EU)  # the earlier scheme: no seq
    for store in regions.stores.values():
        store.table(TABLE + SUFFIX)[k] = tombstone_item(k, deleted, AP, 2_000_000, FIELDS)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


@pytest.mark.xfail(
    strict=True,
    reason="us-east-1's own delete (T, us-east-1, d), applied there after its later update "
    "that hit the marker of T@ap-southeast-1, reads that update as T@ap-southeast-1 (not "
    "newer than the delete) and removes it; the REMOVE then goes out as us-east-1's delete",
)
def test_a_regions_earlier_delete_does_not_remove_its_later_update_that_hit_a_marker(
    regions: StreamRegions,
) -> None:
    """us-east-1 writes k at T and deletes it; ap-southeast-1's write of T arrives there
    (the delete is not replicated yet, so nothing remembers it) and us-east-1's application
    updates that replica landing exactly on T. That update is the latest write of all
    (T@us-east-1, after the delete in us-east-1's stream): it must survive everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s("first")})
    regions.delete(US, k)
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "writer": s(AP)})
    regions.pump(AP)
    regions.update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
