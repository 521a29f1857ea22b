"""Equal timestamps converge to the rule's winner in every region, content included: an
application write is never taken for a replica write, and two contents of one version are
ordered by their place in the origin's stream. Through the real codec, planner, write
protocol and Replicator, over in-memory regions whose streams record every change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynamodb_replicator.core.contract import ViolationKind
from dynamodb_replicator.core.policy import stored_version

from .strategies import FIELDS
from .stream_regions import TABLE, StreamRegions

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
T = 1_700_000_000_000


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()


def test_an_update_landing_on_a_replicas_timestamp_loses_to_the_larger_region(
    regions: StreamRegions,
) -> None:
    """Interleaving 1: ap-southeast-1's application, its clock behind, updates the replica
    of T@us-east-1 and its clock gives exactly T. The update is an application write of
    ap-southeast-1 (not an echo); it loses to us-east-1 (larger name), which is restored
    in ap-southeast-1 too."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.pump(US)
    assert regions.contents(k)[AP] == {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    regions.update(AP, k, **{FIELDS.timestamp: n(T), "writer": s(AP), "counter": n(1)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
    # The one warning is the revert, in the region whose application wrote.
    assert [(v.kind, v.region) for v in regions.violations] == [(ViolationKind.REVERTED, AP)]


def test_an_update_landing_on_a_replicas_timestamp_wins_over_a_smaller_region(
    regions: StreamRegions,
) -> None:
    """The same collision where the application's region has the larger name: its write
    wins everywhere, and its own copy is relabelled with its own version."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s(EU)})
    regions.pump(EU)
    regions.update(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "writer": s(US)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
    held = regions.stores[US].item(TABLE, k)
    version = stored_version(held, US, FIELDS)
    assert version is not None and version.origin == US
    # A later replica of T from a region between the two names must not replace it.
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "writer": s("eu-again")})
    regions.quiesce()
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
    # eu-west-1's honest write of T loses to T@us-east-1 there: reverted, said once.
    assert [(v.kind, v.region) for v in regions.violations] == [(ViolationKind.REVERTED, EU)]


def test_the_latest_content_of_a_version_wins_over_a_stale_restore(
    regions: StreamRegions,
) -> None:
    """Interleaving 2: us-east-1 writes T twice (contents #1 and #3); ap-southeast-1's
    slow clock regresses the item after each; its records, processed in order, ask to
    restore #1 and then #3. The later content of T@us-east-1 wins everywhere."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.pump(US)
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 500), "content": n(2)})
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(3)})
    regions.pump(US)
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 300), "content": n(4)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(3)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_two_writes_of_one_timestamp_in_one_region_end_with_the_later(
    regions: StreamRegions,
) -> None:
    """Two processes of eu-west-1 write k in the same millisecond; the later in the
    stream wins everywhere, whichever copy arrives where first."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
    # A replayed copy of the first content changes nothing.
    regions.read[EU] = 0
    regions.quiesce()
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


def test_a_kept_timestamp_warns_once_in_the_region_that_wrote(regions: StreamRegions) -> None:
    """Issue 24, point 3: an unstamped update in eu-west-1 that kept its own timestamp is
    replicated and warned about once, in eu-west-1; the replica echoes in the other regions
    warn about nothing."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(EU, k, content=n(2))
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}
    assert [(v.kind, v.region) for v in regions.violations] == [(ViolationKind.KEPT_TIMESTAMP, EU)]
