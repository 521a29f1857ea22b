"""Any interleaving and duplication of the same versions converges in every region.

Each region is simulated with the exact algorithm of the writer (conditional put, then a
tombstone-checked put when the item is absent; remember-then-delete), evaluated with the
same condition trees that go to DynamoDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.model import AttributeValue, Version
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion

from .strategies import FIELDS, REGIONS, local_item, replica_item, versions

Item = dict[str, AttributeValue]


@dataclass
class Region:
    name: str
    item: Item | None = None
    tomb: Item | None = None
    writes: list[str] = field(default_factory=list)

    def put(self, policy: ConflictPolicy, version: Version) -> None:
        stored = (
            local_item(version.raw_timestamp)
            if version.origin == self.name
            else replica_item(version)
        )
        older = policy.stored_is_older(version, self.name, strict=False)
        if self.item is not None:
            if older.evaluate(self.item):
                self.item = stored
            return
        tomb_older = policy.stored_is_older(version, self.name, strict=True)
        if tomb_older.evaluate(self.tomb) and older.evaluate(None):
            self.item = stored

    def delete(self, policy: ConflictPolicy, version: Version) -> None:
        not_newer = policy.stored_is_older(version, self.name, strict=False)
        if not_newer.evaluate(self.tomb):
            self.tomb = replica_item(version)
        if not_newer.evaluate(self.item):
            self.item = None


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[list[str], list[tuple[str, Version]], list[tuple[int, int]]]:
    names = sorted(draw(st.sets(st.sampled_from(REGIONS), min_size=2, max_size=4)))
    events = draw(
        st.lists(st.tuples(st.sampled_from(["put", "delete"]), versions()), min_size=1, max_size=6)
    )
    deliveries = [(r, e) for r in range(len(names)) for e in range(len(events))]
    duplicates = draw(st.lists(st.sampled_from(deliveries), max_size=8))
    order = draw(st.permutations(deliveries + duplicates))
    return names, events, order


def expected_winner(policy: ConflictPolicy, events: list[tuple[str, Version]]) -> Version | None:
    """The largest version wins; a delete of a version beats the put of that same version."""
    best = max(events, key=lambda e: (policy.order_key(e[1]), e[0] == "delete"))
    return None if best[0] == "delete" else best[1]


@settings(max_examples=400)
@given(st.sampled_from([LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]), histories())
def test_every_region_ends_with_the_winner(
    policy: ConflictPolicy,
    history: tuple[list[str], list[tuple[str, Version]], list[tuple[int, int]]],
) -> None:
    names, events, order = history
    regions = [Region(name) for name in names]
    for region_index, event_index in order:
        operation, version = events[event_index]
        region = regions[region_index]
        if operation == "put":
            region.put(policy, version)
        else:
            region.delete(policy, version)
    winner = expected_winner(policy, events)
    for region in regions:
        if winner is None:
            assert region.item is None, region.name
        else:
            assert region.item is not None, region.name
            assert region.item[FIELDS.timestamp] == {"N": winner.raw_timestamp}
            held = region.item.get(FIELDS.origin, {"S": region.name})["S"]
            assert held == winner.origin
