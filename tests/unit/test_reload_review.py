"""Adversarial interleavings of an incremental reload (a region added to running shard
workers) with pages in flight and finished shards, over the real ShardWorker, shard thread
loop and Runner with fakes. Each defect test is expected to fail until the defect is fixed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import END, ShardRef
from dynamodb_replicator.ops.backfill import append_region
from dynamodb_replicator.runner.shard_thread import run_shard
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .test_runner_reload import SEQ, SavingState, World, world  # noqa: F401 (the fixture
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, FakeTargets, record

NEW = "d"
REF = ShardRef("Orders", ARN, "s1")


def test_a_region_added_during_a_closed_shards_last_page_is_replicated_to_its_end() -> None:
    stream = FakeStream({"s1": [record(n) for n in range(1, 7)]}, closed={"s1"})
    # add-region seeded the new target where the source region stood: after record 2.
    checkpoints = FakeCheckpoints({REF: {t: f"{2:021d}" for t in [*TARGETS, NEW]}})
    applied, clock = FakeTargets(), ManualClock()
    workers: list[ShardWorker] = []

    def added_mid_page(
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        workers[0].add_targets([NEW])  # the coordinator's reload, while this last page is out
        return applied(table, records, targets, logged=logged, written=written)

    w = ShardWorker(
        REF,
        source=stream,
        checkpoints=checkpoints,
        process=added_mid_page,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=100,
    )
    workers.append(w)

    run_shard(w, threading.Event(), clock, 0.0)  # the shard thread, run to its end
    assert checkpoints.saved[REF][TARGETS[0]] == END  # the old targets reached the end
    # The new target must reach END too (records 3..6 into it), else its child waits.
    assert checkpoints.saved[REF][NEW] == END
    assert applied.applied.get(NEW) == [3, 4, 5, 6]


def test_a_shard_finished_before_an_added_region_is_leased_again_for_it(
    world: World,  # noqa: F811 (the fixture imported above)
) -> None:
    runner, path, _, go_on = world
    go_on.set()
    ref = ShardRef("Orders", "arn:b/stream/Orders", "b-0")
    # The shard was read to its end for a and c (and reaped as finished) after add-region
    # seeded d at an earlier position of it.
    state = runner.regions["b"].state
    assert isinstance(state, SavingState)
    state.saved[ref] = {"a": END, "c": END, NEW: SEQ}
    runner.held.finished.add(ref)
    runner.balance()
    assert ref not in runner.owned  # finished: not leased (the state the test is about)
    append_region(path, RegionSpec(NEW))  # add-region's last step
    assert runner.reload_if_changed()
    runner.balance()
    # d stands at SEQ in a shard no worker will read again: it must be leased once more.
    assert ref in runner.owned
