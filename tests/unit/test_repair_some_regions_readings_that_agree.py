"""``repair --regions`` with a residency rule reads a doubtful tombstone (one naming a
region not read, of a shape a delete and a stand-in share: ``ops.repair_labels.unsure``)
both ways, and leaves the key undecided only when the two readings decide it differently.
Two readings that delete the same version in the same regions decide it alike, whichever
region's name the deciding tombstone carries (co-deleters' tombstones name different
regions until each has heard of the other delete): such a key must be repaired, not
reported undecidable (exit 1) asking for a region the decision does not need."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.plan import DeleteVersion
from dynamodb_replicator.core.tombstones import TombstoneTable

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, n
from .stream_regions import missed_by_all as _missed_by_all
from .test_repair_some_regions_with_a_rule import decide_among
from .world import RULE

SA = "sa-east-1"


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, SA, US])
    yield world
    world.close()


def test_a_delete_both_readings_make_alike_is_repaired_not_left_undecided(
    regions: StreamRegions,
) -> None:
    """ap-southeast-1 writes k (no country: every region), replicated. eu-west-1's and
    us-east-1's applications both delete their copies; eu-west-1's delete reaches no
    other region, us-east-1's only ap-southeast-1 (records lost), and sa-east-1 misses
    both and keeps its copy. ap-southeast-1 remembers (T, ap-southeast-1, ~) naming
    us-east-1 (doubtful: a stand-in for its write kept out of ap-southeast-1 has that
    shape); eu-west-1 remembers the same version naming itself (a delete, certain).
    ``repair --regions ap-southeast-1,eu-west-1,sa-east-1`` with the rule: either way the
    copy in sa-east-1 is deleted as (T, ap-southeast-1, ~)."""
    k = regions.key("k")
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    copies = {name: regions.stores[name].item(TABLE, k) for name in regions.names}
    tombstones = TABLE + SUFFIX
    regions.delete(EU, k)
    regions.pump(EU)
    for name in (AP, SA, US):  # eu-west-1's delete reached no one else
        regions.stores[name].write_directly(tombstones, k, None)
        regions.stores[name].write_directly(TABLE, k, copies[name])
    own = regions.stores[EU].table(tombstones)[k]
    regions.delete(US, k)
    regions.pump(US)
    regions.stores[EU].write_directly(tombstones, k, own)  # us-east-1's: only in ap-se-1
    regions.stores[SA].write_directly(tombstones, k, None)
    regions.stores[SA].write_directly(TABLE, k, copies[SA])
    for name in regions.names:
        _missed_by_all(regions, name)
    remembered = {
        name: TombstoneTable(regions.stores[name], FIELDS, SUFFIX).read(TABLE, [k]).get(k)
        for name in (AP, EU, SA)
    }
    assert remembered[SA] is None and regions.stores[SA].item(TABLE, k) is not None
    ap, eu = remembered[AP], remembered[EU]
    assert ap is not None and eu is not None and ap.version == eu.version
    assert (ap.deleted_in, eu.deleted_in) == (US, EU)
    fewer = decide_among(regions, k, [EU, SA], RULE)  # without ap-southeast-1: decided
    assert fewer is not None and isinstance(fewer[SA], DeleteVersion)
    ops = decide_among(regions, k, [AP, EU, SA], RULE)
    assert ops is not None, "left undecidable"
    delete = ops[SA]
    assert set(ops) == {SA} and isinstance(delete, DeleteVersion)
    assert delete.version == eu.version
