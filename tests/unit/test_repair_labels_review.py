"""Adversarial review: what ``repair`` writes for equal timestamps, and how later writes and
deletes in the version's origin region meet those copies. Through ``repair``'s decision
(ops.repair.resolve) and the real write protocol, then the real codec, planner and
Replicator over in-memory regions whose streams record every change. Each test reproduced
a defect of repair's earlier LATEST labels and pins its fix."""

from __future__ import annotations

from .strategies import FIELDS
from .stream_regions import AP, EU, US, StreamRegions, T, delete_settled, n, written
from .stream_regions import missed_by_all as _missed_by_all
from .stream_regions import repair as _repair


def test_a_delete_in_the_origin_after_a_repair_removes_the_repaired_copies(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k at T; its record never reaches the others (expired), and
    ``repair`` copies eu-west-1's content to them. eu-west-1's application then deletes k:
    the delete must remove the repaired copies everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: written(1), EU: written(1), US: written(1)}
    delete_settled(regions, EU, k)


def test_a_later_write_of_the_same_timestamp_in_the_origin_after_a_repair_wins(
    regions: StreamRegions,
) -> None:
    """As above, but eu-west-1 then writes k again in the same millisecond (a second
    process): the later write in eu-west-1's stream must win everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    regions.quiesce()
    assert regions.contents(k) == {AP: written(2), EU: written(2), US: written(2)}
