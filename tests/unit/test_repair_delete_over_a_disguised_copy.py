"""Repair's delete over a copy its region's application updated keeping the marker (a
disguised copy: its kept labels outrank the delete) relabels that copy as the region's own
content and then removes it (``core.writes``, D2s), while that application keeps writing
the item between any two of repair's calls: it writes the replica's content back (the copy
reads as genuine again), updates it again keeping the marker, puts its own content at T, or
deletes it.

us-east-1 writes k at T (content 1), replicated. ap-southeast-1's application updates its
copy to content 2 keeping the marker, eu-west-1's puts content 3 at T; both records are
lost; eu-west-1 deletes k. ``repair --regions ap-southeast-1,eu-west-1`` (us-east-1 not
read) decides eu-west-1's delete for ap-southeast-1. us-east-1's (T, us-east-1) outranks
every other version of k, so once replication settled and a repair over every region ran,
every region must hold it, unless ap-southeast-1's application deleted a copy that read as
that version (its delete of (T, us-east-1), as the conflict rule has it)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

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

ACTIONS = ("write-back", "update", "put", "delete")
ORIGINAL = {"pk": s("k"), FIELDS.timestamp: n(T), "content": n(1)}


@dataclass
class _Application:
    """ap-southeast-1's application, acting before the chosen calls of repair's writer."""

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
    regions = StreamRegions([AP, EU, US])
    try:
        k = regions.key("k")
        regions.put(US, k, **{FIELDS.timestamp: n(T), "content": n(1)})
        regions.quiesce()
        regions.update(AP, k, content=n(2))
        missed_by_all(regions, AP)
        regions.put(EU, k, **{FIELDS.timestamp: n(T), "content": n(3)})
        missed_by_all(regions, EU)
        regions.delete(EU, k)
        regions.quiesce()
        ops = decide(regions, k, [AP, EU])
        assert set(ops) == {AP}, ops  # eu-west-1's delete, over the disguised copy
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
