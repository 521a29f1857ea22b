"""Repair's delete over a copy its region's application updated keeping the marker (a
disguised copy: its kept labels outrank the delete) supersedes that copy's nonce. Between
repair's read and its writes, that application may write the replica's content back (the
same nonce and marker): the item is then genuine replica content again. A first delete
that removed such an item as it was (found by review, withdrawn) wrote a REMOVE record
that, read by the seal as the replica (T, O, o), went out as that region's delete of
(T, O, ``LATEST``) and removed O's own write, which no one deleted, from every region. The
delete now relabels the item as the region's own content first (a replica write: its
record an echo, or where it replaced the genuine write-back, a restore of (T, O, o)
everywhere) and removes that, whose REMOVE is the replicator's own (``core.writes``, D2s).

The history of every test here: us-east-1 writes k at T (content 1), replicated.
ap-southeast-1's application updates its copy to content 2 keeping the marker, eu-west-1's
puts content 3 at T; both records are lost; eu-west-1 deletes k (T, eu-west-1, s):
ap-southeast-1 refuses it (the kept labels (T, us-east-1) outrank it), us-east-1 keeps its
write. ``repair --regions ap-southeast-1,eu-west-1`` (us-east-1 not read) decides the
delete for ap-southeast-1. Nobody deleted (T, us-east-1), which outranks every other
version of k."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.plan import DeleteVersion, WriteOp
from dynamodb_replicator.core.policy import is_genuine
from dynamodb_replicator.testing.memory_store import MemoryStore

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
    repair,
    s,
)

ORIGINAL = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(1)}
ACTIONS = ("write-back", "update", "put", "delete")


def _delete_over_a_disguised_copy(regions: StreamRegions) -> dict[str, WriteOp]:
    """The history above, up to repair's decision (returned, not yet written)."""
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
    regions.quiesce()
    regions.update(AP, k, content=n(2))
    missed_by_all(regions, AP)
    regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(3)})
    missed_by_all(regions, EU)
    regions.delete(EU, k)
    regions.quiesce()
    assert regions.contents(k)[EU] is None and regions.contents(k)[US] == ORIGINAL
    ops = decide(regions, k, [AP, EU])
    assert set(ops) == {AP} and isinstance(ops[AP], DeleteVersion), ops
    return ops


def test_a_repair_delete_racing_a_write_back_of_the_replica_keeps_the_origins_write() -> None:
    """Before repair writes, ap-southeast-1's application writes content 1 back (nonce and
    marker kept). After the repair and replication, us-east-1 must still hold its own
    write."""
    world = StreamRegions([AP, EU, US])
    try:
        k = world.key("k")
        ops = _delete_over_a_disguised_copy(world)
        world.update(AP, k, content=n(1))  # the write-back: the genuine replica again
        held = world.stores[AP].item(TABLE, k)
        assert held is not None and held["content"] == n(1)  # the state this test is about
        apply_ops(world, ops)
        world.quiesce()
        assert world.contents(k)[US] == ORIGINAL
    finally:
        world.close()


@dataclass
class _Application:
    """ap-southeast-1's application, acting before the chosen calls of repair's writer
    there: it writes the replica's content back, updates the item again keeping the
    marker, puts its own content at T, or deletes the item."""

    regions: StreamRegions
    plan: dict[int, str]
    calls: int = 0
    deleted_the_original: bool = False

    def __call__(self, _store: MemoryStore, _call: str) -> None:
        action = self.plan.get(self.calls)
        self.calls += 1
        if action is not None:
            self.act(action)

    def act(self, action: str) -> None:
        regions, k = self.regions, self.regions.key("k")
        held = regions.stores[AP].item(TABLE, k)
        if action == "put":
            regions.put(AP, k, **{FIELDS.timestamp: n(T), "content": n(7)})
        elif held is None:
            return  # nothing to update or delete
        elif action == "delete":
            # A copy that reads as us-east-1's: the application deletes that version.
            genuine = is_genuine(held, FIELDS) and held.get(FIELDS.origin) == s(US)
            self.deleted_the_original = self.deleted_the_original or genuine
            regions.delete(AP, k)
        else:
            regions.update(AP, k, content=n(1 if action == "write-back" else 4))


@settings(max_examples=200, deadline=None)
# The race that withdrew the first clause: the write-back before repair's first call.
@example(plan={0: "write-back"})
# Between the relabel and the removal: an update that keeps the relabel's marker.
@example(plan={0: "write-back", 3: "update"})
@given(plan=st.dictionaries(st.integers(0, 4), st.sampled_from(ACTIONS), max_size=3))
def test_repairs_delete_over_a_disguised_copy_keeps_the_version_that_outranks_it(
    plan: dict[int, str],
) -> None:
    """ap-southeast-1's application acts between any two of repair's calls there. Once
    replication settled and a repair over every region ran, every region must hold
    us-east-1's write, unless that application deleted a copy that read as it (its delete
    of (T, us-east-1), as the conflict rule has it)."""
    regions = StreamRegions([AP, EU, US])
    try:
        k = regions.key("k")
        ops = _delete_over_a_disguised_copy(regions)
        application = _Application(regions, plan)
        regions.stores[AP].before_call = application
        apply_ops(regions, ops)
        regions.stores[AP].before_call = lambda _s, _c: None
        regions.quiesce()
        repair(regions, k)
        regions.quiesce()
        wanted = None if application.deleted_the_original else ORIGINAL
        assert regions.contents(k) == dict.fromkeys(regions.names, wanted), plan
    finally:
        regions.close()
