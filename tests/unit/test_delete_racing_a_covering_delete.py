"""An application's delete of another region's content, racing a delete or a removal that
covers the same content in its region: the application's delete means every content of
that timestamp and origin (the conflict rule), so a later content of it must not survive
anywhere. Both are strict xfails, one known limit: the application's REMOVE record and the
replicator's removal of that content are the same record (docs/concepts/guarantees.md).
They assert the outcome directly: ``World.check`` models the limit (``World._raced``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dynamodb_replicator.core.model import Version, pad_sequence
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.residency import ResidencyRule

from .strategies import FIELDS
from .stream_regions import AP, EU, US
from .world import KEYS, NOTHING, RULE, TABLE, World

_LIMIT = (
    "the planner takes the application's REMOVE for the replicator's removal of that content"
    " (a covering delete landed in its region before the record was planned): identical"
    " records; a transactional removal would tell them apart, at 4 write units per replicated"
    " delete where the cost model allows 2 (docs/concepts/guarantees.md)"
)


def _nothing_anywhere(world: World) -> None:
    held = {name: store.item(TABLE, KEYS[0]) for name, store in world.stores.items()}
    assert held == {name: None for name in world.names}


@contextmanager
def three_regions(rule: ResidencyRule | None) -> Iterator[World]:
    """ap-southeast-1, eu-west-1 and us-east-1 under last writer wins and ``rule``."""
    world = World(LastWriterWins(FIELDS), [AP, EU, US], lambda: NOTHING, True, rule)
    try:
        yield world
    finally:
        world.close()


def race_a_delete_with_the_applications(world: World, origin: str, racing: Version) -> None:
    """``origin`` wrote two contents of timestamp 7: (7, origin, 7) for US, held by
    us-east-1, and the later (7, origin, 12) for DE, held by eu-west-1. The application in
    us-east-1 deletes what it holds (a delete of every content of (7, origin)); before its
    record is planned, ap-southeast-1's delete of ``racing`` lands in us-east-1. Then the
    rest, in flight after the application's record, is delivered until none is left."""
    key = KEYS[0]
    us_content = world.event("put", key, Version.of("7", origin, pad_sequence("7")), "", "US")
    de_content = world.event("put", key, Version.of("7", origin, pad_sequence("12")), "", "DE")
    world.deliver(US, [us_content])
    world.deliver(EU, [de_content])
    world.application(US, key, delete=True)  # its record waits in world.pending
    assert world.stores[US].item(TABLE, key) is None
    delete = world.event("delete", key, racing, AP)
    world.deliver(US, [delete])
    for op in (us_content, de_content, delete):
        world.pending.extend(world.spread(op))
    world.run(lambda: 1)


@pytest.mark.xfail(strict=True, reason=_LIMIT + " (seeds 3591732, 462187697, 566497147, 566498477)")
@pytest.mark.parametrize("rule", [RULE, None], ids=["residency", "no-rule"])
def test_an_application_delete_racing_the_origin_s_delete_removes_every_content(
    rule: ResidencyRule | None,
) -> None:
    """ap-southeast-1 wrote two contents of timestamp 7: (7, ap, 7) for US, held by
    us-east-1, and the later (7, ap, 12) for DE, held by eu-west-1. The application in
    us-east-1 deletes what it holds (a delete of every content of (7, ap)); before its
    record is planned, ap-southeast-1's own delete of (7, ap, 7) lands in us-east-1. Once
    settled no region may hold the key."""
    with three_regions(rule) as world:
        race_a_delete_with_the_applications(world, AP, Version.of("7", AP, pad_sequence("7")))
        _nothing_anywhere(world)


@pytest.mark.xfail(strict=True, reason=_LIMIT + " (seeds 14626505, 153757571)")
def test_an_application_delete_racing_a_scope_removal_of_a_later_content_removes_it() -> None:
    """eu-west-1 wrote (8, eu, 7) for every region and then (8, eu, 12) for DE only: the
    regions outside DE's scope get a removal of (8, eu, 12), which covers (8, eu, 7). The
    application in ap-southeast-1 deletes its copy of (8, eu, 7) (a delete of every content
    of (8, eu)) just before that removal lands there. Once settled no region may hold the
    key: eu-west-1's (8, eu, 12) is deleted too."""
    with three_regions(RULE) as world:
        key = KEYS[0]
        everywhere = world.event("put", key, Version.of("8", EU, pad_sequence("7")), "")
        for name in world.names:
            world.deliver(name, [everywhere])
        de_only = world.event("put", key, Version.of("8", EU, pad_sequence("12")), "", "DE")
        world.application(AP, key, delete=True)  # its record waits in world.pending
        spread = world.spread(de_only)
        world.deliver(AP, [op for name, op in spread if name == AP])  # the removal lands
        world.pending.extend((name, op) for name, op in spread if name != AP)
        world.run(lambda: 1)
        _nothing_anywhere(world)
