"""A delete repair sends outside the winner's scope that the region refuses (its item's
kept labels outrank it) is sent again by every run. Its tombstone, read as a stand-in, once
lifted the winner's label one seq above it (``ops.repair_labels.own_seq`` read it as a
delete, ``lifted`` passed it though no put goes there), so each run wrote it one seq
higher. That label is also the label of repair's put of the winner into a region of the
scope that lacks it: after one more run than the first, that copy outranked the origin's
next record, the origin's own delete of the item was refused there, and the next repair
took the copy for the winner and put it back everywhere. Now a stand-in bounds the label
from below by its own seq and is passed only where a put goes: runs write the same label."""

from __future__ import annotations

from dynamodb_replicator.core.model import pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.residency import Residency, ResidencyRule

from .strategies import FIELDS
from .stream_regions import (
    AP,
    EU,
    TABLE,
    US,
    StreamRegions,
    T,
    apply_ops,
    decide,
    missed_by_all,
    n,
    s,
)

# XX lives in ap-southeast-1 and eu-west-1, YY in eu-west-1 and us-east-1.
RULE = ResidencyRule("country", (("XX", frozenset({AP, EU})), ("YY", frozenset({EU, US}))))


def _refused_outside_the_scope() -> StreamRegions:
    """ap-southeast-1 holds a copy of (T, us-east-1) of country XX whose ``__replicaNonce``
    is no string (behind the replicator's back: the refused-delete state). eu-west-1 writes
    k at T, country YY: replicated to us-east-1, kept out of ap-southeast-1 (a stand-in;
    the item there refuses the delete)."""
    regions = StreamRegions([AP, EU, US])
    for replicator in regions.replicators.values():
        replicator.residency = Residency(((TABLE, RULE),))
    k = regions.key("k")
    regions.stores[AP].write_directly(
        TABLE,
        k,
        {
            "pk": s("k"),
            FIELDS.timestamp: n(T),
            "country": s("XX"),
            "content": n(9),
            FIELDS.origin: s(US),
            FIELDS.marker: n(T),
            FIELDS.origin_seq: s(pad_sequence("1")),
            FIELDS.nonce: n(7),
        },
    )
    missed_by_all(regions, AP)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "country": s("YY"), "content": n(1)})
    regions.quiesce()
    return regions


def _origin_delete_after_repairs(runs_before: int) -> StreamRegions:
    """The refused delete outside the scope (``_refused_outside_the_scope``);
    ``runs_before`` repairs run (each refuses the delete in ap-southeast-1 again). Then
    us-east-1's application writes an older k (T - 1) over its copy, and one more repair
    runs before that record is read (replication in flight): it puts eu-west-1's winner
    back into us-east-1. Replication settles; eu-west-1's application deletes k;
    replication settles."""
    regions = _refused_outside_the_scope()
    k = regions.key("k")
    for _ in range(runs_before):
        ops = decide(regions, k, rule=RULE)
        assert set(ops) == {AP} and isinstance(ops[AP], DeleteVersion)  # refused every run
        apply_ops(regions, ops)
    regions.put(US, k, **{FIELDS.timestamp: n(T - 1), "country": s("YY"), "content": n(0)})
    ops = decide(regions, k, rule=RULE)
    assert isinstance(ops[US], PutVersion)  # the winner back into us-east-1
    apply_ops(regions, ops)
    regions.quiesce()
    assert regions.contents(k)[US] == regions.contents(k)[EU]  # both hold eu-west-1's write
    regions.delete(EU, k)
    regions.quiesce()
    return regions


def test_the_origins_delete_holds_after_one_repair() -> None:
    """The control: with no run before, the copy's label is below eu-west-1's next
    record, and its delete removes the copy in us-east-1."""
    regions = _origin_delete_after_repairs(0)
    try:
        k = regions.key("k")
        assert regions.contents(k)[EU] is None and regions.contents(k)[US] is None
    finally:
        regions.close()


def test_the_origins_delete_holds_after_a_repair_over_a_refused_delete_ran_twice() -> None:
    """One run before: the copy repair puts into us-east-1 is labelled as after no run,
    so eu-west-1's delete removes it, and a further repair leaves k deleted."""
    regions = _origin_delete_after_repairs(1)
    try:
        k = regions.key("k")
        assert regions.contents(k)[EU] is None
        assert regions.contents(k)[US] is None, "us-east-1 refused eu-west-1's delete"
        apply_ops(regions, decide(regions, k, rule=RULE))
        regions.quiesce()
        assert regions.contents(k)[EU] is None, "repair put the deleted item back"
    finally:
        regions.close()


def test_runs_over_a_refused_delete_send_the_same_delete() -> None:
    """Three runs over the refused delete in ap-southeast-1 (outside the winner's scope)
    send it with one label: its tombstone is no delete, and no put goes there, so it
    lifts nothing."""
    regions = _refused_outside_the_scope()
    try:
        k = regions.key("k")
        sent = []
        for _ in range(3):
            ops = decide(regions, k, rule=RULE)
            delete = ops[AP]
            assert set(ops) == {AP} and isinstance(delete, DeleteVersion)  # refused
            sent.append(delete.version)
            apply_ops(regions, ops)
        assert sent[0].seq == sent[1].seq == sent[2].seq, sent
    finally:
        regions.close()
