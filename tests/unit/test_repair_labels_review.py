"""Adversarial review: what ``repair`` writes for equal timestamps, and how later writes and
deletes in the version's origin region meet those copies. Through ``repair``'s decision
(ops.repair.resolve) and the real write protocol, then the real codec, planner and
Replicator over in-memory regions whose streams record every change. Each test marked
xfail(strict) reproduces a defect: it fails today and passes once it is fixed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.ops.repair import resolve

from .strategies import FIELDS
from .stream_regions import SUFFIX, TABLE, StreamRegions

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
T = 1_700_000_000_000


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


class _Clock:
    def now(self) -> float:
        return 1_000_000.0


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()


def _repair(regions: StreamRegions, k: ItemKey) -> None:
    """``repair``'s decision applied with the real write protocol (no tombstones left)."""
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {name: None for name in regions.stores}
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS) or {}
    for name, op in ops.items():
        assert isinstance(op, PutVersion)
        protocol = WriteProtocol(
            regions.stores[name], LastWriterWins(FIELDS), FIELDS, _Clock(), SUFFIX, 3600
        )
        protocol.put(TABLE, op)


def _missed_by_all(regions: StreamRegions, region: str) -> None:
    """``region``'s unread records never reach anyone (they expired while it was cut off)."""
    regions.read[region] = len(regions.stores[region].stream)


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
    item = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(1)}
    assert regions.contents(k) == {AP: item, EU: item, US: item}
    regions.delete(EU, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


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
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
