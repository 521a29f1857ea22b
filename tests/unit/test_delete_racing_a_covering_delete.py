"""An application's delete of another region's content, racing that region's own delete of
the same content: the application's delete means every content of that timestamp and
origin (the conflict rule), so a later content of it must not survive anywhere."""

from __future__ import annotations

import pytest

from dynamodb_replicator.core.model import Version, pad_sequence
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.residency import ResidencyRule

from .strategies import FIELDS
from .world import KEYS, NOTHING, RULE, TABLE, World

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"


@pytest.mark.xfail(
    strict=True,
    reason="the planner takes the application's REMOVE for an echo of the covering delete of"
    " (T, O, x) that landed before it was planned, and drops its delete of every content of"
    " (T, O): a later content (T, O, y) survives (fault schedule seeds 3591732, 462187697,"
    " 566497147, 566498477: all with the residency rule)",
)
@pytest.mark.parametrize("rule", [RULE, None], ids=["residency", "no-rule"])
def test_an_application_delete_racing_the_origin_s_delete_removes_every_content(
    rule: ResidencyRule | None,
) -> None:
    """ap-southeast-1 wrote two contents of timestamp 7: (7, ap, 7) for US, held by
    us-east-1, and the later (7, ap, 12) for DE, held by eu-west-1. The application in
    us-east-1 deletes what it holds (a delete of every content of (7, ap)); before its
    record is planned, ap-southeast-1's own delete of (7, ap, 7) lands in us-east-1. Once
    settled no region may hold the key."""
    world = World(LastWriterWins(FIELDS), [AP, EU, US], lambda: NOTHING, True, rule)
    try:
        key = KEYS[0]
        us_content = world.event("put", key, Version.of("7", AP, pad_sequence("7")), "", "US")
        de_content = world.event("put", key, Version.of("7", AP, pad_sequence("12")), "", "DE")
        world.deliver(US, [us_content])
        world.deliver(EU, [de_content])
        world.application(US, key, delete=True)  # its record waits in world.pending
        assert world.stores[US].item(TABLE, key) is None
        origin_delete = world.event("delete", key, Version.of("7", AP, pad_sequence("7")), AP)
        world.deliver(US, [origin_delete])
        # Everything else still in flight, after the application's record.
        for op in (us_content, de_content, origin_delete):
            world.pending.extend(world.spread(op))
        world.run(lambda: 1)
        world.check()
    finally:
        world.close()
