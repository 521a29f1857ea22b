"""A ``version`` difference ``diff`` reports must be one ``repair`` can fix: repair's writes
go through the write protocol's conditions, which read a stored item's labels (marker,
``__originRegion``, ``__originSeq``), not its seal. ``core.policy.labelled_version``
(diff and repair) reads a copy its application updated keeping the replica marker (no
``stamp()``) as the holder's own write, while the conditions still read the replica it
updated: repair's put of the winner supersedes the copy's nonce (P1 replaces it, read as
the holder's own), and so does its delete (D2s relabels it as the holder's own, then
removes it; the race that withdrew a delete removing it as it was is
``test_repair_delete_racing_a_write_back.py``). An item carrying the marker without
``__originRegion`` is the holder's own to the conditions too (``marked`` needs an origin,
as ``is_marked`` does): the restore and repair's put replace it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.plan import DeleteVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.residency import Residency, ResidencyRule
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.ops.diff import DiffReport, compare_bucket, rows_of
from dynamodb_replicator.ops.repair import resolve

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, n, s
from .stream_regions import apply_ops as _apply
from .stream_regions import missed_by_all as _missed_by_all

# Items of country XX live in ap-southeast-1 and eu-west-1, not in us-east-1.
RULE = ResidencyRule("country", (("XX", frozenset({AP, EU})),))


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    for replicator in world.replicators.values():
        replicator.residency = Residency(((TABLE, RULE),))
    yield world
    world.close()


def diff(world: StreamRegions) -> DiffReport:
    rows = {
        name: {
            row.key: row
            for row in rows_of(list(store.table(TABLE).values()), name, ["pk"], FIELDS, RULE)
        }
        for name, store in world.stores.items()
    }
    report = DiffReport(TABLE, AP)
    compare_bucket(rows, AP, report)
    return report


def test_repair_fixes_a_version_difference_held_under_a_replicas_outranking_labels(
    regions: StreamRegions,
) -> None:
    """us-east-1's application writes an XX item at T: copied to ap-southeast-1 and
    eu-west-1 as (T, us-east-1, u), removed from us-east-1 (outside its scope).
    ap-southeast-1's application updates its copy to content 2 keeping the marker (no
    ``stamp()``), eu-west-1's application puts content 2 at T; both records are lost
    (expired while the regions were cut off). Both regions hold content 2: ap-southeast-1
    under (T, ap-southeast-1) as diff labels it, eu-west-1 under (T, eu-west-1): a
    ``version`` difference. Repair's winner is eu-west-1's; its put must land."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1), "country": s("XX")})
    regions.quiesce()
    assert regions.stores[US].item(TABLE, k) is None
    regions.update(AP, k, content=n(2))
    _missed_by_all(regions, AP)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2), "country": s("XX")})
    _missed_by_all(regions, EU)
    disguised = regions.stores[AP].item(TABLE, k)
    assert disguised is not None and disguised[FIELDS.origin] == s(US)  # marker kept
    before = diff(regions)
    assert before.regions[EU].version == 1 and before.regions[EU].different == 0
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {
        name: TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [k]).get(k)
        for name, store in regions.stores.items()
    }
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS, rule=RULE)
    assert ops is not None and set(ops) == {AP}  # repair decides, and writes ap-southeast-1
    _apply(regions, dict(ops))
    after = diff(regions)
    assert after.identical, after.as_json()


def test_repair_lands_a_delete_over_a_copy_updated_keeping_its_marker(
    regions: StreamRegions,
) -> None:
    """The same two regions holding content 2 (see above); eu-west-1's application then
    deletes k. The delete outranks ap-southeast-1's (T, ap-southeast-1) as diff and
    repair read it; after replication and repair, k must be gone everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1), "country": s("XX")})
    regions.quiesce()
    regions.update(AP, k, content=n(2))
    _missed_by_all(regions, AP)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2), "country": s("XX")})
    _missed_by_all(regions, EU)
    regions.delete(EU, k)
    regions.quiesce()
    assert regions.stores[EU].item(TABLE, k) is None
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {
        name: TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [k]).get(k)
        for name, store in regions.stores.items()
    }
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS, rule=RULE)
    assert ops is not None and set(ops) == {AP}  # repair decides: delete it there
    _apply(regions, dict(ops))
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}


def test_the_restore_replaces_an_item_marked_without_an_origin() -> None:
    """us-east-1 writes k at T, replicated. ap-southeast-1's application puts the same
    content at T carrying the replica marker but no ``__originRegion`` (an item copied
    with some of the replicator's attributes): its record, (T, ap-southeast-1), loses to
    (T, us-east-1), and the restore must land: the conditions read that item as the
    holder's own, as the stream, diff and repair do, not as a replica no version of T
    outranks. No version difference is left."""
    world = StreamRegions([AP, EU, US])
    try:
        k = world.key("k")
        world.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
        world.quiesce()
        world.put(AP, k, **{FIELDS.timestamp: n(T), FIELDS.marker: n(T), "content": n(1)})
        world.quiesce()
        held = world.stores[AP].item(TABLE, k)
        assert held is not None and held.get(FIELDS.origin) == s(US)
        assert _diff_without_rule(world).identical
    finally:
        world.close()


def test_repair_fixes_a_version_difference_on_an_item_marked_without_an_origin() -> None:
    """The same item planted in ap-southeast-1 with no record (a restore from a backup,
    say): diff reports ap-southeast-1's (T, ap-southeast-1) against (T, us-east-1) in the
    others (``version``). Repair's put of (T, us-east-1) must land."""
    world = StreamRegions([AP, EU, US])
    try:
        k = world.key("k")
        world.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
        world.quiesce()
        marked = {"pk": s("k"), FIELDS.timestamp: n(T), FIELDS.marker: n(T), "content": n(1)}
        world.stores[AP].write_directly(TABLE, k, marked)
        before = _diff_without_rule(world)
        assert before.regions[US].version == 1 and before.regions[US].different == 0
        items = {name: store.item(TABLE, k) for name, store in world.stores.items()}
        tombs = {name: None for name in world.stores}
        ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS)
        assert ops is not None and set(ops) == {AP}
        _apply(world, dict(ops))
        held = world.stores[AP].item(TABLE, k)
        assert held is not None and held.get(FIELDS.origin) == s(US)
        assert _diff_without_rule(world).identical
    finally:
        world.close()


def _diff_without_rule(world: StreamRegions) -> DiffReport:
    rows = {
        name: {r.key: r for r in rows_of(list(st.table(TABLE).values()), name, ["pk"], FIELDS)}
        for name, st in world.stores.items()
    }
    report = DiffReport(TABLE, AP)
    compare_bucket(rows, AP, report)
    return report


def test_repair_removes_an_updated_copy_left_outside_the_winners_scope(
    regions: StreamRegions,
) -> None:
    """us-east-1 writes an XX item at T (copied to ap-southeast-1 and eu-west-1, removed
    from us-east-1). ap-southeast-1's application updates its copy keeping the marker
    (labels (T, us-east-1, u)); eu-west-1's application puts content 3 of country YY at
    T, whose scope leaves out ap-southeast-1; both records are lost. The winner (T,
    eu-west-1) outranks ap-southeast-1's own content, so repair deletes it there (outside
    the winner's scope): the delete must land, though the kept labels outrank it."""
    yy = ResidencyRule("country", (*RULE.scopes, ("YY", frozenset({EU, US}))))
    for replicator in regions.replicators.values():
        replicator.residency = Residency(((TABLE, yy),))
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1), "country": s("XX")})
    regions.quiesce()
    regions.update(AP, k, content=n(2))
    _missed_by_all(regions, AP)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(3), "country": s("YY")})
    _missed_by_all(regions, EU)
    held = regions.stores[AP].item(TABLE, k)
    assert held is not None and held[FIELDS.origin] == s(US) and held["content"] == n(2)
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {
        name: TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [k]).get(k)
        for name, store in regions.stores.items()
    }
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS, rule=yy)
    assert ops is not None and isinstance(ops[AP], DeleteVersion)
    _apply(regions, dict(ops))
    assert regions.stores[AP].item(TABLE, k) is None
