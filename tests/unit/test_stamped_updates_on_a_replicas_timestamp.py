"""An application update made through ``stamp()`` that lands exactly on a replica's
timestamp converges to the rule's winner, content included: the stamper drops the replica
marker, so the item reads as content of the region that wrote it, to conditions and to the
codec alike. The same interleavings with an unstamped update that keeps the marker are the
known limit pinned in test_equal_versions_review.py."""

from __future__ import annotations

from .strategies import FIELDS
from .stream_regions import AP, EU, US, StreamRegions, T, n, s


def test_a_delete_of_a_replica_spares_a_stamped_update_that_won_on_its_timestamp(
    regions: StreamRegions,
) -> None:
    """eu-west-1 writes k at T; us-east-1's application updates its replica at exactly T
    (the larger name wins); ap-southeast-1 deletes its replica of T@eu-west-1 first."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    regions.stamped_update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    assert FIELDS.marker not in (regions.stores[US].item("T", k) or {})
    regions.delete(AP, k)
    regions.pump(AP)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_an_origin_delete_spares_a_stamped_update_that_won_on_its_timestamp(
    regions: StreamRegions,
) -> None:
    """As above, but eu-west-1 itself deletes T@eu-west-1."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    regions.stamped_update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.delete(EU, k)
    regions.pump(EU)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_regions_earlier_delete_spares_its_later_stamped_update_on_a_replica(
    regions: StreamRegions,
) -> None:
    """us-east-1 writes k at T and deletes it; ap-southeast-1's T arrives there before the
    delete is replicated; us-east-1's application updates that replica at exactly T: the
    latest write of all, which must survive everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s("first")})
    regions.delete(US, k)
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "writer": s(AP)})
    regions.pump(AP)
    regions.stamped_update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_stamped_update_that_lost_on_a_replicas_timestamp_is_reverted_everywhere(
    regions: StreamRegions,
) -> None:
    """Interleaving 1 of issue 29 through ``stamp()``: ap-southeast-1's update lands on
    T@us-east-1 and loses to it (smaller name): us-east-1's content ends everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.pump(US)
    regions.stamped_update(AP, k, **{FIELDS.timestamp: n(T), "writer": s(AP)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
