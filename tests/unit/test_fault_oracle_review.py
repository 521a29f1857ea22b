"""Adversarial review of the fault-schedule oracle's excuse for the known delete race
(``World._raced``, branch h-eqv): the excuse must not pass a planner that is wrong for
another reason. The planner is broken on purpose here (a mutation of our own pure code,
not a mock of a store): an oracle that still passes it is too lenient."""

from __future__ import annotations

from typing import Any

import pytest

from dynamodb_replicator.core import plan as planning
from dynamodb_replicator.core.model import Version, pad_sequence
from dynamodb_replicator.core.residency import ResidencyRule

from .stream_regions import AP, EU
from .test_delete_racing_a_covering_delete import race_a_delete_with_the_applications, three_regions
from .world import KEYS, RULE, TABLE


def _any_foreign_tombstone_is_an_echo(change: Any, tomb: Any, source: str, policy: Any) -> bool:
    """A wrong planner: every delete record of a region that remembers another region's
    delete is taken for the replicator's removal, whether or not that delete covers what
    the record removed."""
    return tomb is not None and tomb.deleted_in != source


@pytest.mark.parametrize("rule", [RULE, None], ids=["residency", "no-rule"])
def test_the_oracle_fails_a_planner_that_drops_a_delete_not_covered_by_the_tombstone(
    monkeypatch: pytest.MonkeyPatch, rule: ResidencyRule | None
) -> None:
    """us-east-1 holds (7, eu, 7) for US, eu-west-1 the later (7, eu, 12) for DE. The
    application in us-east-1 deletes what it holds (a delete of every content of (7, eu));
    before its record is planned a late delete of the older (5, ap) lands there: its
    tombstone covers nothing us-east-1 held. The broken planner drops the application's
    delete as an echo, so (7, eu, 12) survives in eu-west-1 (and, without a rule, spreads
    everywhere): check must fail. Without the excuse it does; with the real planner the
    scenario passes check (nothing anywhere)."""
    monkeypatch.setattr(planning, "_removed_by_the_replicator", _any_foreign_tombstone_is_an_echo)
    with three_regions(rule) as world:
        race_a_delete_with_the_applications(world, EU, Version.of("5", AP, pad_sequence("3")))
        assert world.stores[EU].item(TABLE, KEYS[0]) is not None  # the broken planner's work
        with pytest.raises(AssertionError):
            world.check()
