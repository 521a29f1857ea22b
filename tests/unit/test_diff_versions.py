"""diff and the settle wait compare versions, not content alone: regions holding the same
content under two versions (timestamp, origin) do not agree, because the next write or
delete of the key is conditioned on the version and lands in one and not the other.
``repair`` gives every region the winner's version. The origin's stream position and the
replicator's per-write attributes (marker, nonce) are no part of what must be equal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.ops.diff import DiffReport, Row, compare_bucket, key_differs, rows_of
from dynamodb_replicator.ops.settle import agrees

from .strategies import FIELDS
from .stream_regions import AP, EU, TABLE, US, StreamRegions, T, n, repair, s
from .stream_regions import decide as _decide
from .stream_regions import missed_by_all as _missed_by_all

US2 = "us-west-2"


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()


def diff(world: StreamRegions, rule: ResidencyRule | None = None) -> DiffReport:
    """``diff`` of the in-memory regions, as ``scan_and_compare`` compares one bucket."""
    rows = {
        name: {
            row.key: row
            for row in rows_of(list(store.table(TABLE).values()), name, ["pk"], FIELDS, rule)
        }
        for name, store in world.stores.items()
    }
    report = DiffReport(TABLE, AP)
    compare_bucket(rows, AP, report)
    return report


def same_content_under_two_versions(regions: StreamRegions) -> ItemKey:
    """eu-west-1 writes k, replicated everywhere; us-east-1's application then writes the
    very same content at the same timestamp (an idempotent retry made in another region),
    and that record is lost: every region holds the same content, us-east-1 under (T,
    us-east-1), the others under (T, eu-west-1)."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    _missed_by_all(regions, US)
    assert len({str(regions.contents(k)[r]) for r in regions.names}) == 1  # same content
    return k


def test_the_same_content_under_two_versions_diverges_on_the_next_delete(
    regions: StreamRegions,
) -> None:
    """Why a version difference is a difference: eu-west-1's application deletes the item;
    the delete of (T, eu-west-1) removes it where that version is held and is older than
    us-east-1's (T, us-east-1), which keeps the item. The contents now differ."""
    k = same_content_under_two_versions(regions)
    regions.delete(EU, k)
    regions.quiesce()
    contents = regions.contents(k)
    assert contents[AP] is None and contents[EU] is None and contents[US] is not None


def test_diff_reports_the_same_content_under_another_version_and_repair_fixes_it(
    regions: StreamRegions,
) -> None:
    k = same_content_under_two_versions(regions)
    report = diff(regions)
    assert report.verdict == "different"
    assert report.regions[US].version == 1 and report.regions[US].different == 0
    assert report.regions[US].samples["version"] == [str(k)]
    assert report.regions[EU].identical  # the reference's own version, copied
    assert report.as_json()["regions"][US]["version"] == 1
    # repair: the winner is (T, us-east-1), the larger origin; every region gets it.
    assert set(_decide(regions, k)) == {AP, EU}
    repair(regions, k)
    assert diff(regions).identical
    for store in regions.stores.values():
        held = store.item(TABLE, k)
        assert held is not None and held.get(FIELDS.origin, s(US)) == s(US)
    # ... and the next delete now reaches every region.
    regions.delete(EU, k)
    regions.quiesce()
    assert set(map(str, regions.contents(k).values())) == {"None"}


def test_a_replicated_item_is_identical_although_its_bookkeeping_differs(
    regions: StreamRegions,
) -> None:
    """The origin holds its own content (no marker, no origin, no seq), the others sealed
    copies carrying the origin's name and stream position: one version everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    copy, own = regions.stores[AP].item(TABLE, k), regions.stores[EU].item(TABLE, k)
    assert copy is not None and own is not None
    assert FIELDS.origin_seq in copy and FIELDS.origin_seq not in own
    assert diff(regions).identical


def test_an_update_of_a_copy_keeping_its_timestamp_is_its_regions_own_version(
    regions: StreamRegions,
) -> None:
    """us-east-1's application updates its copy of eu-west-1's item keeping the timestamp
    (and the replica marker, its seal now broken): content of us-east-1's own, (T,
    us-east-1), as repair labels it. It is replicated as such; the replicator's relabelling
    of us-east-1's item is lost. diff must find every region agreeing, as repair does
    (it writes nothing): else diff would report a difference repair never fixes."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(US, k, content=n(2))
    updated = regions.stores[US].item(TABLE, k)
    assert updated is not None and updated[FIELDS.origin] == s(EU)  # marked, seal broken
    regions.quiesce()
    regions.stores[US].write_directly(TABLE, k, updated)  # the relabel lost
    _missed_by_all(regions, US)
    assert regions.stores[AP].item(TABLE, k)[FIELDS.origin] == s(US)  # type: ignore[index]
    report = diff(regions)
    assert report.identical, report.as_json()
    assert _decide(regions, k) == {}


def row(region: str, digest: str, origin: str, scope: tuple[str, ...] | None) -> tuple[str, Row]:
    return (region, Row("k", digest, "10", origin, scope))


def test_the_settle_wait_counts_a_version_difference_as_a_difference() -> None:
    assert agrees((row(EU, "x", EU, None), row(US, "x", EU, None)))
    assert not agrees((row(EU, "x", EU, None), row(US, "x", US, None)))
    assert not key_differs((row(EU, "x", EU, None), row(US, "x", EU, None)))


def test_the_settle_wait_lets_a_region_outside_an_items_scope_lack_it() -> None:
    """A US item held in both US regions and rightly absent from eu-west-1 (the first,
    the reference) agrees: the settle wait must not call that key diverged."""
    scope = (US, US2)
    held = (EU, None), row(US, "x", US, scope), row(US2, "x", US, scope)
    assert agrees(held)
    lacking = (EU, None), row(US, "x", US, scope), (US2, None)
    assert not agrees(lacking)  # missing in us-west-2, inside its scope
    outside = row(EU, "x", US, scope), row(US, "x", US, scope), row(US2, "x", US, scope)
    assert not agrees(outside)  # held in eu-west-1, outside its scope
