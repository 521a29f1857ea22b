"""An application update that lands exactly on a replica's timestamp converges to the rule's
winner, content included, when it is made through ``stamp()``: the stamper drops the
replica marker, so the item reads as content of the region that wrote it, to conditions
and to the codec alike. Each interleaving runs twice: ``stamped`` (through ``stamp()``) and
``unstamped`` (an UpdateItem that keeps the marker).

The unstamped runs are one known limit, pinned as strict expected failures: an update that
keeps the replica's marker and wins is removed by a delete its conditions read as covering
the replica. No conditional write can tell that update from the replica
(docs/concepts/guarantees.md, "Under these assumptions", says why)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .strategies import FIELDS
from .stream_regions import AP, EU, US, StreamRegions, T, n, s


def _update(regions: StreamRegions, kind: str) -> Callable[..., None]:
    """The application's UpdateItem: through ``stamp()`` or not."""
    return regions.stamped_update if kind == "stamped" else regions.update


_XFAIL_REPLICA_DELETE = pytest.mark.xfail(
    strict=True,
    reason="in us-east-1 the delete of T@eu-west-1 removes the winning update that hit the "
    "replica's marker (conditions read it as T@eu-west-1); the REMOVE record then reads as "
    "us-east-1's own delete of (T, us-east-1) and removes the winner everywhere",
)
_XFAIL_ORIGIN_DELETE = pytest.mark.xfail(
    strict=True,
    reason="the same, with the delete made in the replica's own region: us-east-1's REMOVE "
    "record of the winning update again reads as its own delete and removes it everywhere",
)


@pytest.mark.parametrize(
    ("deleter", "kind"),
    [
        pytest.param(AP, "stamped", id="replica-stamped"),
        pytest.param(AP, "unstamped", marks=_XFAIL_REPLICA_DELETE, id="replica-unstamped"),
        pytest.param(EU, "stamped", id="origin-stamped"),
        pytest.param(EU, "unstamped", marks=_XFAIL_ORIGIN_DELETE, id="origin-unstamped"),
    ],
)
def test_a_delete_of_the_replicas_version_spares_an_update_that_won_on_its_timestamp(
    regions: StreamRegions, deleter: str, kind: str
) -> None:
    """eu-west-1 writes k at T; us-east-1's application updates its replica landing exactly
    on T (the larger region name: its write wins over T@eu-west-1); ap-southeast-1 deletes
    its replica of T@eu-west-1 (``replica``), or eu-west-1 deletes what it wrote
    (``origin``), before us-east-1's record is replicated. The delete of T@eu-west-1 is
    older than T@us-east-1: us-east-1's content must survive everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    _update(regions, kind)(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    keeps_marker = FIELDS.marker in (regions.stores[US].item("T", k) or {})
    assert keeps_marker == (kind == "unstamped")
    regions.delete(deleter, k)
    regions.pump(deleter)
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


_XFAIL_EARLIER_DELETE = pytest.mark.xfail(
    strict=True,
    reason="us-east-1's own delete (T, us-east-1, d), applied there after its later update "
    "that hit the marker of T@ap-southeast-1, reads that update as T@ap-southeast-1 (not "
    "newer than the delete) and removes it; the REMOVE then goes out as us-east-1's delete",
)


@pytest.mark.parametrize(
    "kind", ["stamped", pytest.param("unstamped", marks=_XFAIL_EARLIER_DELETE)]
)
def test_a_regions_earlier_delete_spares_its_later_update_on_a_replica(
    regions: StreamRegions, kind: str
) -> None:
    """us-east-1 writes k at T and deletes it; ap-southeast-1's write of T arrives there
    (the delete is not replicated yet, so nothing remembers it) and us-east-1's application
    updates that replica landing exactly on T. That update is the latest write of all
    (T@us-east-1, after the delete in us-east-1's stream): it must survive everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s("first")})
    regions.delete(US, k)
    regions.put(AP, k, **{FIELDS.timestamp: n(T), "writer": s(AP)})
    regions.pump(AP)
    _update(regions, kind)(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
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
