"""``repair --regions`` with a residency rule: a tombstone naming a region repair does not
read may be a delete or the residency projection's stand-in for a put, and some have the
same shape either way (``ops.repair_labels``). Where the two readings decide the key
differently, repair must not guess (either guess loses a delete or deletes a live
version): the key is left undecided, reported, and repair with that region read decides."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.residency import ResidencyRule

from .strategies import FIELDS
from .stream_regions import TABLE, StreamRegions, delete_missed_by, resolve_among
from .stream_regions import apply_ops as _apply
from .test_residency_repair import kept_out_put_in_flight, settle_put
from .world import KEYS, NOTHING, RULE, World

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
US1, US2 = "us-east-1", "us-west-2"
T = 1_700_000_000_000


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()


def decide_among(
    stores: StreamRegions | World, k: ItemKey, names: Sequence[str], rule: ResidencyRule
) -> dict[str, WriteOp] | None:
    """``repair --regions`` ``names`` with ``rule``: None when the key is undecided."""
    return resolve_among(stores.stores, k, names, rule)


def test_a_delete_made_in_an_unread_region_is_not_taken_for_a_stand_in(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k (no country: every region), replicated. ap-southeast-1's
    application deletes it: eu-west-1 remembers (T, eu-west-1, ~) naming ap-southeast-1,
    the very shape of the stand-in that removes a write of eu-west-1's outside its scope;
    us-east-1 missed the delete and keeps its copy. ``repair --regions
    eu-west-1,us-east-1`` with the rule cannot tell a delete from that stand-in: it must
    not copy the item back (towards eu-west-1, as if nothing was deleted) but leave the key
    undecided; read with ap-southeast-1, the delete is ranked and removes the copy."""
    k = regions.key("k")
    delete_missed_by(regions, k, AP, missed=US)
    assert decide_among(regions, k, [EU, US], RULE) is None
    everywhere = decide_among(regions, k, [AP, EU, US], RULE)
    assert everywhere is not None and set(everywhere) == {US}
    _apply(regions, everywhere)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_a_stand_in_for_a_put_in_flight_from_an_unread_region_is_not_taken_for_a_delete() -> None:
    """us-east-1's application writes a DE item (eu-west-1 only) at 4: settled. It writes
    it again at 5: removed from us-east-1 and kept out of us-west-2 (a stand-in of (5,
    us-east-1, s) naming us-east-1), its put to eu-west-1 still in flight. ``repair
    --regions eu-west-1,us-west-2`` does not read us-east-1 and sees no copy of 5: the
    stand-in has the shape of us-east-1's own delete of 5. Taken for one, repair deletes
    eu-west-1's 4 with (5, us-east-1, s), which then refuses the put in flight: the write
    of 5 is lost everywhere. The key must be left undecided, and the put must land."""
    world = World(LastWriterWins(FIELDS), [EU, US1, US2], lambda: NOTHING, True, RULE)
    try:
        key = KEYS[0]
        written, in_flight = kept_out_put_in_flight(world, key)
        assert decide_among(world, key, [EU, US2], RULE) is None
        world.writers[EU].apply(TABLE, in_flight)  # the put in flight lands
        held = world.stores[EU].item(TABLE, key)
        assert held is not None and held["c"] == written["c"]
    finally:
        world.close()


def test_a_stand_in_whose_put_landed_in_a_read_region_is_still_told_by_its_shape() -> None:
    """us-east-1's application writes a DE item at 4: in eu-west-1, kept out of
    us-west-2 (a stand-in naming us-east-1). ``repair --regions eu-west-1,us-west-2``
    reads the copy the stand-in stands for: nothing to decide, nothing to write."""
    world = World(LastWriterWins(FIELDS), [EU, US1, US2], lambda: NOTHING, True, RULE)
    try:
        key = KEYS[0]
        settle_put(world, key, "4", US1, "DE")
        assert decide_among(world, key, [EU, US2], RULE) == {}
    finally:
        world.close()
