"""Review of repair's D2s (its delete over a disguised copy relabels it as the holder's own
content, then removes it) and of stand-in tombstones counted as "at least s" with lifts
labelled s + '+'. Each test here reproduces a defect found by review: a strict xfail until
it is fixed (the reason names the interleaving)."""

from __future__ import annotations

import pytest

from dynamodb_replicator.core.plan import DeleteVersion
from dynamodb_replicator.core.tombstones import TombstoneTable

from .strategies import FIELDS
from .stream_regions import (
    AP,
    EU,
    SUFFIX,
    TABLE,
    US,
    StreamRegions,
    T,
    apply_ops,
    decide,
    missed_by_all,
    n,
    written,
)


def _tomb_origin(regions: StreamRegions, region: str) -> str | None:
    k = regions.key("k")
    tomb = TombstoneTable(regions.stores[region], FIELDS, SUFFIX).read(TABLE, [k]).get(k)
    return None if tomb is None else tomb.version.origin


@pytest.mark.xfail(
    strict=True,
    reason=(
        "D2s: a write-back of the replica's content racing repair's delete makes the "
        "relabel's record a replica write going backwards, which restores (T, us-east-1, u) "
        "everywhere, with no check that us-east-1 deleted that version: eu-west-1, whose "
        "tombstone of that delete expired, takes it back"
    ),
)
def test_a_write_back_racing_repairs_delete_does_not_bring_back_a_version_its_origin_deleted() -> (
    None
):
    """us-east-1 writes k at T (content 1), replicated; ap-southeast-1's application
    updates its copy to content 2 keeping marker and nonce (record lost). us-east-1 deletes
    k: eu-west-1 removes its copy, ap-southeast-1 was cut off (copy kept, no tombstone);
    eu-west-1's tombstone of that delete expires (us-east-1 still remembers it).
    eu-west-1 then puts content 3 at T and deletes it (tombstone (T, eu-west-1, s)
    everywhere; ap-southeast-1 refuses it: the kept labels (T, us-east-1, u) outrank it).
    ``repair --regions ap-southeast-1,eu-west-1`` decides a delete of (T, eu-west-1, s) for
    ap-southeast-1 superseding the copy's nonce; before it writes, ap-southeast-1's
    application writes content 1 back (genuine replica content again). After replication,
    no region may hold us-east-1's deleted content: eu-west-1 had removed it."""
    regions = StreamRegions([AP, EU, US])
    try:
        k = regions.key("k")
        regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
        regions.quiesce()
        regions.update(AP, k, content=n(2))
        missed_by_all(regions, AP)
        disguised = regions.stores[AP].item(TABLE, k)
        regions.delete(US, k)
        regions.quiesce()
        assert regions.contents(k)[EU] is None  # eu-west-1 applied us-east-1's delete
        # ap-southeast-1 was cut off; eu-west-1's tombstone expired.
        regions.stores[AP].write_directly(TABLE, k, disguised)
        regions.stores[AP].write_directly(TABLE + SUFFIX, k, None)
        regions.stores[EU].write_directly(TABLE + SUFFIX, k, None)
        missed_by_all(regions, AP)
        missed_by_all(regions, EU)
        regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(3)})
        missed_by_all(regions, EU)
        regions.delete(EU, k)
        regions.quiesce()
        assert regions.contents(k) == {AP: written(2), EU: None, US: None}
        assert _tomb_origin(regions, US) == US and _tomb_origin(regions, EU) == EU
        ops = decide(regions, k, [AP, EU])
        delete = ops.get(AP)
        assert set(ops) == {AP} and isinstance(delete, DeleteVersion), ops
        assert delete.supersedes is not None  # D2s is what this test is about
        regions.update(AP, k, content=n(1))  # the write-back: genuine replica content
        apply_ops(regions, ops)
        regions.quiesce()
        assert regions.contents(k) == dict.fromkeys(regions.names)
    finally:
        regions.close()
