"""A config reload that removes or changes a region or a table, with the real Runner, Held
and ShardWorker over fake regions: only the shard workers it concerns stop (their page
ends, then their lease is released), the others keep their threads and pages, and a
removed target leaves them without a position of it saved for a page not written to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.held import unknown_targets_failed
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.runner.shard_thread import Owned, run_shard
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .reloading import rewrite
from .test_runner_outage import NAMES, FakeState
from .test_runner_reload import GatedReplicator, SavingState, World, saved, world  # noqa: F401
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, FakeTargets, record


def _until(condition: Callable[[], bool]) -> bool:
    give_up, poll = time.monotonic() + 30, threading.Event()
    while time.monotonic() < give_up and not condition():
        poll.wait(0.01)
    return condition()


def _all_saved(runner: Runner) -> bool:
    return all(
        set(saved(runner, o.region, ref)) == set(NAMES)  # (its own region among them)
        for ref, o in runner.owned.items()
    )


def _held(runner: Runner, region: str) -> dict[ShardRef, Owned]:
    return {ref: o for ref, o in runner.owned.items() if o.region == region}


def test_removing_a_region_stops_only_its_shards_and_the_others_drop_it_as_target(
    world: World,  # noqa: F811 (the fixture imported above)
) -> None:
    runner, path, made, go_on = world
    go_on.set()
    runner.balance()
    assert {o.region for o in runner.owned.values()} == set(NAMES)
    assert _until(lambda: _all_saved(runner))  # every shard wrote its page to the others
    kept = {**_held(runner, "a"), **_held(runner, "b")}
    gone = _held(runner, "c")

    rewrite(path, ["a", "b"])
    assert runner.reload_if_changed()

    state_c = made["c"][0].state
    assert isinstance(state_c, FakeState)
    assert set(state_c.released) == set(gone)  # handed over: released, not left to expire
    assert not any(o.thread.is_alive() for o in gone.values())
    assert set(runner.regions) == {"a", "b"} and set(runner.keeper.stores) == {"a", "b"}
    replicator_c = made["c"][0].replicator
    assert isinstance(replicator_c, GatedReplicator) and replicator_c.closed
    # The others run on, the same threads, and leave c at their next step.
    assert all(runner.owned.get(ref) is o and o.thread.is_alive() for ref, o in kept.items())
    assert _until(lambda: all("c" not in o.worker.targets for o in kept.values()))
    runner.balance()  # and the next round neither restarts them nor takes c's shards
    assert {ref: runner.owned[ref] for ref in runner.owned} == kept


def test_changing_a_regions_endpoint_hands_over_only_the_shards_read_from_it(
    world: World,  # noqa: F811 (the fixture imported above)
) -> None:
    runner, path, made, go_on = world
    go_on.set()
    runner.balance()
    assert _until(lambda: _all_saved(runner))
    others = {**_held(runner, "b"), **_held(runner, "c")}
    moved = _held(runner, "a")

    rewrite(path, endpoints={"a": "http://elsewhere:8000"})
    assert runner.reload_if_changed()

    state_a = made["a"][0].state
    assert isinstance(state_a, FakeState)
    assert set(state_a.released) == set(moved)
    assert runner.regions["a"].streams is made["a"][1].streams  # the new clients
    assert "a" not in runner.keeper.claims  # claimed again through the new store
    assert all(runner.owned.get(ref) is o and o.thread.is_alive() for ref, o in others.items())
    runner.balance()  # a's shards are taken again, through the new region's clients
    assert set(_held(runner, "a")) == set(moved)
    assert all(runner.owned[ref] is not o for ref, o in moved.items())
    assert all("a" in o.worker.targets for o in others.values())  # a stays their target


def test_a_page_in_flight_ends_through_a_reload_that_removes_its_target(
    world: World,  # noqa: F811 (the fixture imported above)
) -> None:
    runner, path, made, go_on = world
    runner.balance()
    first = made["a"][0].replicator
    assert isinstance(first, GatedReplicator)
    assert first.entered.wait(30)  # a page of a shard of a is being written, to b and c
    ref, before = next(iter(_held(runner, "a").items()))

    rewrite(path, ["a", "b"])
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    clock.t = 1022.4  # near the deadline: c's held pages are waited for only briefly
    assert runner.reload_if_changed()
    assert runner.owned.get(ref) is before and before.thread.is_alive()
    assert not first.closed  # its page is still out: its replicator stays up
    go_on.set()
    # The page ends (written to b and c: both saved), then the worker leaves c.
    assert _until(lambda: set(saved(runner, "a", ref)) == set(NAMES) and first.closed)
    assert _until(lambda: before.worker.targets == ("a", "b"))
    assert first.refused == []


def test_renaming_a_table_in_one_region_hands_over_that_tables_shards_only(
    world: World,  # noqa: F811 (the fixture imported above)
) -> None:
    runner, path, made, go_on = world
    go_on.set()
    runner.balance()
    assert _until(lambda: _all_saved(runner))
    before = dict(runner.owned)
    kept_replicator, kept_state = runner.regions["b"].replicator, runner.regions["b"].state

    rewrite(path, extra='[table_names.Orders]\nb = "Orders-b"\n')
    assert runner.reload_if_changed()
    assert runner.config.replication.names.physical("Orders", "b") == "Orders-b"

    assert not runner.owned  # every held shard was of Orders: all handed over
    for name in NAMES:
        state = made[name][0].state
        assert isinstance(state, FakeState)
        assert {ref for ref in state.released} == {r for r, o in before.items() if o.region == name}
    # The new stream clients (they read b's table under its new name), the kept stores.
    assert runner.regions["b"].streams is made["b"][1].streams
    assert runner.regions["b"].replicator is kept_replicator
    assert runner.regions["b"].state is kept_state
    runner.balance()
    assert set(runner.owned) == set(before)


REF = ShardRef("Orders", ARN, "s1")


def test_a_target_removed_under_a_page_is_neither_written_nor_checkpointed() -> None:
    """The race the runner allows: a page that began before its worker took up a removal
    goes through a replicator that no longer knows the target."""
    stream = FakeStream({"s1": [record(n) for n in range(1, 7)]}, closed={"s1"})
    checkpoints = FakeCheckpoints({})
    applied, clock = FakeTargets(), ManualClock()
    gone = TARGETS[-1]
    workers: list[ShardWorker] = []

    def replaced_mid_page(
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
        workers[0].remove_targets([gone])  # the coordinator's reload, while this page is out
        known = [t for t in targets if t != gone]  # the new replicator's regions
        result = applied(table, records, known, logged=logged, written=written)
        return unknown_targets_failed(result, targets, records)

    w = ShardWorker(
        REF,
        source=stream,
        checkpoints=checkpoints,
        process=replaced_mid_page,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=2,
    )
    workers.append(w)
    run_shard(w, threading.Event(), clock, 0.0)  # the shard thread, run to its end
    assert w.targets == tuple(TARGETS[:-1]) and w.done
    assert gone not in checkpoints.saved.get(REF, {})  # nothing written, nothing saved
    assert applied.applied.get(gone) is None
    assert all(applied.applied.get(t) == [1, 2, 3, 4, 5, 6] for t in TARGETS[:-1])


def test_an_unknown_target_fails_at_the_first_record() -> None:
    records = [record(3), record(4)]
    result = BatchResult({"b": TargetResult("b", applied=2)})
    failed = unknown_targets_failed(result, ["b", "c"], records)
    assert failed.failed_sequence("c") == str(records[0]["dynamodb"]["SequenceNumber"])
    assert failed.failed_sequence("b") is None
    assert unknown_targets_failed(result, ["b"], records) is result
