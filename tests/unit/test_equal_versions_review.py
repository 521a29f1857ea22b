"""Review of equal versions (issue 29): interleavings that converge to the rule's winner,
content included, through the real codec, planner, write protocol and Replicator over
in-memory regions whose streams record every change. An application update that lands
exactly on a replica's timestamp, and the known limit it meets without ``stamp()``, is in
test_updates_on_a_replicas_timestamp.py."""

from __future__ import annotations

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
