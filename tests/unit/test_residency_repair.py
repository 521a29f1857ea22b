"""Repair and residency: what ``repair`` decides for a key once replication settled, when
some regions remember the delete that kept a version out of them (tombstones of kept-out
versions) and others hold that very version inside its scope."""

from __future__ import annotations

import pytest

from dynamodb_replicator.core.model import Change, ItemKey, Operation, Version
from dynamodb_replicator.core.plan import DeleteVersion, WriteOp
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.ops.repair import resolve

from .strategies import FIELDS
from .world import KEYS, NOTHING, RULE, SUFFIX, TABLE, Record, World, image

EC1, EU, US1, US2 = "eu-central-1", "eu-west-1", "us-east-1", "us-west-2"


def repair_ops(world: World, key: ItemKey, rule: ResidencyRule = RULE) -> dict[str, WriteOp]:
    """What repair would do for ``key`` given every region's item and tombstone."""
    items = {name: store.item(TABLE, key) for name, store in world.stores.items()}
    tombs = {
        name: TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [key]).get(key)
        for name, store in world.stores.items()
    }
    ops = resolve(key, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS, rule=rule)
    return dict(ops or {})


@pytest.mark.xfail(
    strict=True,
    reason="repair ranks a tombstone of a kept-out version (the origin's LATEST removal) above"
    " the same version held in its scope and deletes the item there (a lost write)",
)
def test_repair_keeps_a_write_made_outside_its_scope_in_its_scope() -> None:
    """us-east-1's application writes a DE item (outside its scope): it is replicated to
    eu-west-1 and removed from us-east-1 (tombstone of every content of its version there)
    and kept out of us-west-2 (tombstone of its version). Replication settled right; repair
    must find nothing to do, not delete the DE item from eu-west-1."""
    world = World(LastWriterWins(FIELDS), [EU, US1, US2], lambda: NOTHING, True, RULE)
    try:
        key, version = KEYS[0], Version.of("4", US1)
        written = image(key, version, country="DE")
        world.stores[US1].write_directly(TABLE, key, written)
        world.countries[version] = "DE"
        world.happened("put", key, version, country="DE")
        put = Change(Operation.PUT, key, world.seq(), version, written)
        world.deliver_record(Record(US1, put, (EU, US1, US2)))
        world.run(lambda: 1)
        world.check()  # settled: eu-west-1 holds it, the US regions do not
        assert world.stores[EU].item(TABLE, key) is not None
        ops = repair_ops(world, key)
        assert not isinstance(ops.get(EU), DeleteVersion), ops
    finally:
        world.close()


@pytest.mark.xfail(
    strict=True,
    reason="the tombstone repair leaves when it moves an item out of a region that left the"
    " rule outranks the item's copies in its scope: a second repair deletes them (lost write)",
)
def test_repair_after_a_region_left_the_rule_keeps_the_item_in_the_rest_of_its_scope() -> None:
    """DE items may live in eu-central-1 and eu-west-1; one written in eu-central-1 is in
    both. The rule then drops eu-central-1 (DE: eu-west-1 only) and repair moves the item
    out of it, as the residency page says. Repair run again on that settled table must do
    nothing: the tombstone it left in eu-central-1 must not read as a delete that beats
    eu-west-1's copy."""
    wide = ResidencyRule("country", (("DE", frozenset({EC1, EU})), ("US", frozenset({US1}))))
    world = World(LastWriterWins(FIELDS), [EC1, EU, US1], lambda: NOTHING, True, wide)
    try:
        key, version = KEYS[0], Version.of("4", EC1)
        written = image(key, version, country="DE")
        world.stores[EC1].write_directly(TABLE, key, written)
        world.countries[version] = "DE"
        world.happened("put", key, version, country="DE")
        put = Change(Operation.PUT, key, world.seq(), version, written)
        world.deliver_record(Record(EC1, put, (EC1, EU, US1)))
        world.run(lambda: 1)
        world.check()
        assert world.stores[EC1].item(TABLE, key) is not None  # in the wide scope
        world.rule = RULE  # eu-central-1 leaves the DE scope
        first = repair_ops(world, key)
        assert set(first) == {EC1} and isinstance(first[EC1], DeleteVersion)
        assert world.writers[EC1].apply(TABLE, [first[EC1]]).failed_sequence is None
        world.check()  # moved: only eu-west-1 holds it
        again = repair_ops(world, key)
        assert EU not in again, again
    finally:
        world.close()
