"""Review of equal versions (issue 29): interleavings that should converge to the rule's
winner, content included, through the real codec, planner, write protocol and Replicator
over in-memory regions whose streams record every change. Each test marked xfail(strict)
reproduces a defect: it fails today and passes once the defect is fixed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.ops.repair import resolve

from .strategies import FIELDS
from .stream_regions import TABLE, SUFFIX, StreamRegions

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
    """``repair``'s decision (ops.repair.resolve) applied with the real write protocol."""
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {name: None for name in regions.stores}
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS) or {}
    for name, op in ops.items():
        assert isinstance(op, PutVersion)
        protocol = WriteProtocol(
            regions.stores[name], LastWriterWins(FIELDS), FIELDS, _Clock(), SUFFIX, 3600
        )
        protocol.put(TABLE, op)


@pytest.mark.xfail(
    strict=True,
    reason="repair ranks the holder's own content of (T, R) as seq '' below a stale copy "
    "(T, R, x) elsewhere: it picks the stale content, and its put is refused in R anyway",
)
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
