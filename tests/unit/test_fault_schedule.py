"""Seeded, Jepsen-style runs of the real planner and writer against in-memory regions under
a random fault schedule: throttles, writes applied but never acknowledged, application
writes and deletes between replicator calls, stale replays by a zombie worker, a second
worker delivering the same records (a lease takeover). Timestamps collide (see
``tests/unit/world.py``) and regions are compared by item content. Each seed is
deterministic, and so is the default run: the same ``FAULT_SCHEDULE_SEEDS`` seeds from
``FAULT_SCHEDULE_BASE`` every time, so that ``make test`` passes or fails the same way on
every clone. A search for new failures draws its base at random
(``FAULT_SCHEDULE_BASE=random FAULT_SCHEDULE_SEEDS=5000``); a failing seed is named.

Replay one: ``FAULT_SCHEDULE_SEED=N pytest tests/unit/test_fault_schedule.py``.
"""

from __future__ import annotations

import os
import random

from dynamodb_replicator.core.model import Version, pad_sequence
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion

from .strategies import FIELDS, REGIONS
from .world import ACTIONS, COUNTRIES, KEYS, RULE, World

SEEDS = int(os.environ.get("FAULT_SCHEDULE_SEEDS", "250"))
BASE = os.environ.get("FAULT_SCHEDULE_BASE", "20261202")


def run_seed(seed: int) -> None:
    rng = random.Random(seed)
    names = sorted(rng.sample(REGIONS, rng.randint(2, 4)))
    policies: list[ConflictPolicy] = [LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]
    policy = rng.choice(policies)
    weights = [6, 2, 1, 1, 1, 1, 1]
    rule = RULE if rng.random() < 0.5 else None  # items with a residency attribute
    actions = lambda: rng.choices(ACTIONS, weights)[0]  # noqa: E731
    world = World(policy, names, actions, rng.random() < 0.8, rule)
    try:
        for _ in range(rng.randint(4, 14)):
            key = rng.choice(KEYS)
            # Colliding timestamps: across regions, and two contents of one timestamp in one
            # region (told apart by the origin record's seq).
            seq = rng.choice(["", pad_sequence("7"), pad_sequence("12")])
            version = Version.of(str(rng.randint(0, 8)), rng.choice(names), seq)
            kind = rng.choice(["put", "put", "delete"])
            op = world.event(kind, key, version, rng.choice(names), rng.choice(COUNTRIES))
            world.pending.extend(world.spread(op))
            if rng.random() < 0.3:  # replayed
                world.pending.extend(world.spread(op))
        rng.shuffle(world.pending)
        world.run(lambda: rng.randint(1, 6))
        world.check()
    finally:
        world.close()


def test_random_fault_schedules_converge() -> None:
    chosen = os.environ.get("FAULT_SCHEDULE_SEED")
    if chosen is not None:
        run_seed(int(chosen))
        return
    base = random.SystemRandom().randrange(1 << 30) if BASE == "random" else int(BASE)
    for seed in range(base, base + SEEDS):
        try:
            run_seed(seed)
        except AssertionError as exc:
            raise AssertionError(f"FAULT_SCHEDULE_SEED={seed}: {exc}") from exc
    print(f"fault schedules: {SEEDS} seeds from {base} converged")
