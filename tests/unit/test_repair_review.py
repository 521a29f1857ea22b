"""Adversarial review of ``repair`` (ops.repair.resolve, ops.repair_labels) and ``diff``
(ops.diff.compare_bucket): repair racing the application and the replicator's records in
flight, records lost, repair run twice, equal timestamps. Through repair's decision and
the real write protocol, then the real codec, planner and Replicator over in-memory
regions whose streams record every change. Four of these reproduced defects the review
found; each now pins its fix."""

from __future__ import annotations

from dynamodb_replicator.core.policy import LastWriterWins

from .strategies import FIELDS
from .stream_regions import (
    AP,
    EU,
    TABLE,
    US,
    StreamRegions,
    T,
    delete_missed_by,
    delete_settled,
    n,
    s,
)
from .stream_regions import apply_ops as _apply
from .stream_regions import decide as _decide
from .stream_regions import missed_by_all as _missed_by_all
from .stream_regions import repair as _repair
from .stream_regions import written as item
from .test_residency_repair import kept_out_put_in_flight, repair_ops
from .world import KEYS, NOTHING, RULE, World

US1, US2 = "us-east-1", "us-west-2"


def test_repair_racing_an_origins_delete_in_flight_does_not_bring_the_item_back(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k, replicated. eu-west-1's application deletes k; before the
    replicator reads that record (no tombstone anywhere yet), repair reads every region and
    copies the item back into eu-west-1. Then the delete's record is replicated: every
    region must end without k."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.delete(EU, k)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_repair_racing_another_regions_delete_in_flight_does_not_bring_the_item_back(
    regions: StreamRegions,
) -> None:
    """As above, the delete made in ap-southeast-1 of eu-west-1's version."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.delete(AP, k)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_repair_keeps_a_lost_update_that_kept_a_replicas_timestamp_in_a_larger_region(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes T, replicated. us-east-1's application updates the replica keeping
    T (the marker and nonce stay): a write of T from us-east-1, which wins over eu-west-1
    by region name. Its record is lost; repair must keep us-east-1's content."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(US, k, content=n(2))
    _missed_by_all(regions, US)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}


def test_repair_racing_an_update_that_kept_a_replicas_timestamp_keeps_the_update(
    regions: StreamRegions,
) -> None:
    """As above, the update's record in flight (replicated after the repair)."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(US, k, content=n(2))
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}


def test_repair_of_equal_timestamps_in_two_regions_then_their_rewrites_ends_with_the_larger(
    regions: StreamRegions,
) -> None:
    """eu-west-1 and us-east-1 both write T (records lost): us-east-1 wins. Repair, then
    us-east-1 rewrites T, then eu-west-1 rewrites T: us-east-1's rewrite wins."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    _missed_by_all(regions, EU)
    _missed_by_all(regions, US)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(3)})
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(4)})
    regions.quiesce()
    assert regions.contents(k) == {AP: item(3), EU: item(3), US: item(3)}


def test_repair_twice_with_an_origins_lost_rewrite_between_keeps_its_later_changes(
    regions: StreamRegions,
) -> None:
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}
    delete_settled(regions, EU, k)


def test_an_origins_rewrite_between_repairs_read_and_write_wins(
    regions: StreamRegions,
) -> None:
    """repair reads (eu-west-1's 1 of T, record lost), eu-west-1 writes 2 of T, then
    repair writes 1: eu-west-1's later write must win everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    ops = _decide(regions, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    _apply(regions, ops)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}


def test_an_origins_delete_between_repairs_read_and_write_wins(
    regions: StreamRegions,
) -> None:
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    ops = _decide(regions, k)
    regions.delete(EU, k)
    _apply(regions, ops)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_repair_of_an_origins_lost_reinsert_after_a_delete_keeps_it_and_its_next_delete(
    regions: StreamRegions,
) -> None:
    """eu-west-1: 1 of T replicated; delete (replicated); 1 of T again (lost): the
    re-insert wins everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.delete(EU, k)
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(1), EU: item(1), US: item(1)}
    delete_settled(regions, EU, k)


# Holds: without a residency rule no tombstone is a stand-in when its deleting region is
# not read (ops.repair_labels.stand_in), so eu-west-1's (T, eu-west-1, ~) is ranked.
def test_repair_of_regions_without_the_deleting_one_still_deletes(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k, replicated. ap-southeast-1's application deletes it: the delete
    reaches eu-west-1 (its tombstone: (T, eu-west-1, ~), deleted in ap-southeast-1) but
    us-east-1 was cut off and missed it (no tombstone there, its copy stays). ``repair
    --regions eu-west-1,us-east-1`` must delete us-east-1's copy, not copy it back into
    eu-west-1."""
    k = regions.key("k")
    delete_missed_by(regions, k, AP, missed=US)
    _apply(regions, _decide(regions, k, [EU, US]))
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


# Holds: us-west-2's tombstone names us-east-1, which repair reads and which remembers no
# delete of its own of (5, us-east-1, s): a stand-in, not ranked (ops.repair_labels.stand_in).
def test_repair_racing_a_kept_out_write_does_not_take_its_stand_in_for_a_delete() -> None:
    """us-east-1's application writes a DE item (allowed in eu-west-1 only) at 4: settled
    (copy in eu-west-1, removed from us-east-1, kept out of us-west-2). It writes the item
    again at 5: the replicator removes it from us-east-1 and keeps it out of us-west-2 (a
    stand-in tombstone of (5, us-east-1, s) there), while its put to eu-west-1 is still in
    flight (throttled, retried). repair runs now: it must not take us-west-2's stand-in
    for a delete of the version on its way, or that put is refused when it lands and the
    write of 5 is lost everywhere."""
    world = World(LastWriterWins(FIELDS), [EU, US1, US2], lambda: NOTHING, True, RULE)
    try:
        key = KEYS[0]
        written, in_flight = kept_out_put_in_flight(world, key)
        ops = repair_ops(world, key)
        for region, op in ops.items():
            assert world.writers[region].apply(TABLE, [op]).failed_sequence is None
        world.writers[EU].apply(TABLE, in_flight)  # the put in flight lands
        held = world.stores[EU].item(TABLE, key)
        assert held is not None and held["c"] == written["c"], (ops, held)
    finally:
        world.close()


# Holds: ops.repair._holds wants the winner's timestamp and origin, not its content alone.
# The delete is now made between repair's read and its write (as in the tests above): made
# after the put landed it would be a delete of the winner eu-west-1 then holds, rightly
# removing it everywhere; made before, it is of (T, eu-west-1), older than the winner.
def test_repair_gives_a_region_holding_the_winners_content_under_its_own_version_the_winner(
    regions: StreamRegions,
) -> None:
    """eu-west-1 and us-east-1 write the same content at T (an idempotent write made in two
    regions); both records are lost. The winner is (T, us-east-1): repair must put it in
    eu-west-1 too, whose own (T, eu-west-1) has the same content. eu-west-1's application
    deletes the item after repair read it: a delete of (T, eu-west-1), older than the
    winner, which must stay in every region (eu-west-1 too)."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, EU)
    _missed_by_all(regions, US)
    ops = _decide(regions, k)
    assert set(ops) == {AP, EU}, ops
    regions.delete(EU, k)
    _apply(regions, ops)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(1), EU: item(1), US: item(1)}
    held = regions.stores[EU].item(TABLE, k)
    assert held is not None and held[FIELDS.origin] == s(US)


# Holds: ops.repair._best_item labels an item whose seal is broken (policy.is_genuine) as
# its region's own content, above every known seq of its version (own_seq).
def test_repair_keeps_an_origins_lost_update_of_its_restored_copy_of_the_same_timestamp(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes 1 at T, replicated; its application then writes an older timestamp
    (a clock behind): the replicator restores the winner there, a copy of (T, eu-west-1).
    eu-west-1's application updates that item keeping T (a later write of T in its
    stream); the record is lost. repair must spread the update, not the copies."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T - 1), "content": n(0)})  # regresses
    regions.quiesce()
    restored = regions.stores[EU].item(TABLE, k)
    assert restored is not None and restored[FIELDS.origin] == s(EU)  # a copy, marked
    regions.update(EU, k, content=n(2))
    _missed_by_all(regions, EU)
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}


def test_repair_racing_an_origins_update_of_its_restored_copy_keeps_the_update(
    regions: StreamRegions,
) -> None:
    """As above, the update's record in flight while repair runs."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.put(EU, k, **{FIELDS.timestamp: n(T - 1), "content": n(0)})  # regresses
    regions.quiesce()
    regions.update(EU, k, content=n(2))
    _repair(regions, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: item(2), EU: item(2), US: item(2)}
