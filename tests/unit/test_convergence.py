"""Any order, duplication and concurrency of puts and deletes converges, running the real
write protocol (``core.writes`` through ``core.writer.StoreWriter``) and the real planner
against in-memory stores that evaluate the same condition trees DynamoDB gets.

Hypothesis draws the writes, the order of delivery, the batches and a schedule of faults
that slip in between any two store calls (see ``tests/unit/world.py``). Timestamps collide
across regions, twice within one region (two contents of one timestamp, told apart by the
origin record's sequence number) and where an application update lands exactly on a
replica's timestamp. At the end every region must hold each key's winner, its content
included: the largest version put or deleted anywhere, a delete beating a put of the same
version; nothing deleted comes back. With a residency rule, the winner projected onto its
scope: held where its scope includes the region, absent elsewhere (items move between
scopes as updates change their country).
"""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.model import Version
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion

from .strategies import FIELDS, REGIONS, versions
from .world import ACTIONS, COUNTRIES, KEYS, NOTHING, RULE, World

# (put or delete, key index, version, where a delete happened, delivered twice, country)
Event = tuple[str, int, Version, str, bool, str | None]
Drawn = tuple[list[str], list[Event], list[int], bool, bool]


@st.composite
def worlds(draw: st.DrawFn) -> Drawn:
    names = sorted(draw(st.sets(st.sampled_from(REGIONS), min_size=2, max_size=4)))
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["put", "delete"]),
                st.integers(0, len(KEYS) - 1),
                versions(),
                st.sampled_from(names),
                st.booleans(),
                st.sampled_from(COUNTRIES),
            ),
            min_size=1,
            max_size=6,
        )
    )
    schedule = draw(st.lists(st.sampled_from([NOTHING, NOTHING, *ACTIONS]), max_size=40))
    # Without the tombstone read before the writes (P0), late puts land and must be
    # settled: correctness must not depend on P0.
    prefetch = draw(st.booleans())
    return names, events, schedule, prefetch, draw(st.booleans())


# A lean default for ``make test``; CONVERGENCE_EXAMPLES=3000 for a long run.
EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "500"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.sampled_from([LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]),
    worlds(),
    st.randoms(use_true_random=False),
)
def test_every_region_ends_with_the_winner(
    policy: ConflictPolicy,
    drawn: Drawn,
    rng: random.Random,
) -> None:
    names, events, schedule, prefetch, resident = drawn
    actions = iter(schedule)
    rule = RULE if resident else None
    world = World(policy, names, lambda: next(actions, NOTHING), prefetch, rule)
    try:
        for kind, key_index, version, deleted_in, replay, country in events:
            op = world.event(kind, KEYS[key_index], version, deleted_in, country)
            world.pending.extend(world.spread(op))
            world.pending.extend(world.spread(op) if replay else [])
        rng.shuffle(world.pending)
        world.run(lambda: rng.randint(1, 4))
        world.check()
    finally:
        world.close()
