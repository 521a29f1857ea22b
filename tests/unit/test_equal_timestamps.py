"""Equal timestamps converge to the rule's winner in every region, content included: an
application write is never taken for a replica write, and two contents of one version are
ordered by their place in the origin's stream. Through the real codec, planner, write
protocol and Replicator, over in-memory regions whose streams record every change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamodb_replicator.core.codec import decode_record
from dynamodb_replicator.core.contract import ViolationKind
from dynamodb_replicator.core.model import Item, ItemKey, Version, pad_sequence
from dynamodb_replicator.core.plan import PutVersion, WriteOp, plan_changes
from dynamodb_replicator.core.policy import LastWriterWins, stored_version
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .stream_regions import AP, EU, SUFFIX, TABLE, US, StreamRegions, T, earlier_scheme_copy, n, s


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


def test_a_reinsert_after_deleting_an_earlier_scheme_copy_of_the_same_timestamp_survives(
    regions: StreamRegions,
) -> None:
    """README Guarantees, 'a delete followed by a re-insert of the same timestamp in one
    region keeps the re-insert', for an item the earlier scheme wrote: eu-west-1 holds its
    own T as the earlier replicator restored it (no seq), deletes it and writes T again."""
    k = regions.key("k")
    stores = list(regions.stores.values())
    earlier_scheme_copy(stores, k, EU, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.delete(EU, k)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(2)})
    regions.quiesce()
    winner = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(2)}
    assert regions.contents(k) == {AP: winner, EU: winner, US: winner}


class _Region:
    """One region of the next test: its store, a writer, and its application."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.store = MemoryStore(name)
        protocol = WriteProtocol(
            self.store, LastWriterWins(FIELDS), FIELDS, ManualClock(1_000_000.0), SUFFIX, 3600
        )
        self.writer = StoreWriter(protocol, WriterOptions(1, Backoff(attempts=1, base=0.0)))

    def apply(self, ops: Sequence[WriteOp]) -> None:
        assert self.writer.apply(TABLE, ops).failed_sequence is None

    def delete(self, k: ItemKey, sequence: str) -> dict[str, Any]:
        """The application deletes ``k``: its stream record."""
        old = self.store.item(TABLE, k)
        assert old is not None
        self.store.write_directly(TABLE, k, None)
        body = {"Keys": k.to_attributes(), "SequenceNumber": sequence, "OldImage": dict(old)}
        return {"eventName": "REMOVE", "dynamodb": body}

    def plan(self, record: dict[str, Any], regions: Sequence[_Region]) -> dict[str, list[WriteOp]]:
        """The record decoded and planned with this region's tombstones as they are now."""
        change = decode_record(record, source_region=self.name, fields=FIELDS, from_json=False)
        tombs = TombstoneTable(self.store, FIELDS, SUFFIX).read(TABLE, [change.key])
        names = [region.name for region in regions]
        policy, fields = LastWriterWins(FIELDS), FIELDS
        plan = plan_changes(
            [change],
            source=self.name,
            regions=names,
            policy=policy,
            fields=fields,
            tombstones=tombs,
        )
        return {name: list(ops) for name, ops in plan.writes.items()}


def test_a_delete_of_an_earlier_scheme_copy_in_its_own_region_is_remembered_as_made() -> None:
    """FAULT_SCHEDULE_SEED=507311645, step by step. eu-west-1 holds T@eu-west-1 #A as
    the earlier scheme wrote it (no seq) and its application deletes it (record 100). A
    copy of #B, T@eu-west-1 at seq 7 (written in eu-west-1 before that delete), lands in
    both regions; us-east-1's application deletes it there; then eu-west-1's delete is
    replicated, then us-east-1's. The delete must be remembered as the version it removed,
    up to its place in the stream: not as a seq of "" (which the conditions read as the
    lowest, sparing #B in eu-west-1) while the tombstone reads back as every content of T
    (which makes us-east-1's delete of #B look like an echo of it)."""
    k = ItemKey.from_attributes({"pk": s("k")})
    eu, us = _Region(EU), _Region(US)
    regions = [eu, us]
    earlier_scheme_copy([eu.store], k, EU, **{FIELDS.timestamp: n(T), "c": s("A")})
    eu_delete = eu.delete(k, "100")
    image: Item = {**k.to_attributes(), FIELDS.timestamp: n(T), "c": s("B")}
    b = PutVersion(k, Version.of(str(T), EU, pad_sequence("7")), image, "7")
    eu.apply([b])
    us.apply([b])
    us_delete = us.delete(k, "200")
    for source, record in ((eu, eu_delete), (us, us_delete)):
        for name, ops in source.plan(record, regions).items():
            next(region for region in regions if region.name == name).apply(ops)
    for region in regions:
        region.writer.close()
    assert {region.name: region.store.item(TABLE, k) for region in regions} == {EU: None, US: None}


def test_a_delete_in_the_origin_covers_a_restore_of_what_it_deleted(
    regions: StreamRegions,
) -> None:
    """FAULT_SCHEDULE_SEED=293989415 in short. eu-west-1 writes k at T (#1, record x)
    and then, its clock behind, at T - 2 (record r): its record asks to restore #1 as
    (T, eu-west-1, r). ap-southeast-1's application regresses its copy too, and its
    restore of (T, eu-west-1, x) reaches eu-west-1 first; eu-west-1's application then
    deletes that copy. The delete is eu-west-1's latest write of T: it must cover the
    restore labelled r, still on its way, and k ends deleted everywhere."""
    k = regions.key("k")
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(EU, k, **{FIELDS.timestamp: n(T - 2), "content": n(2)})
    regions.update(AP, k, **{FIELDS.timestamp: n(T - 8), "content": n(3)})
    regions.pump(AP)
    assert regions.contents(k)[EU] == {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(1)}
    regions.delete(EU, k)
    regions.quiesce()
    assert regions.contents(k) == {AP: None, EU: None, US: None}
