"""A shard worker a reload stops while its page is still out past the lease's deadline has
its lease *left to expire* (docs/concepts/reload.md): that page's last request may land
until then. The same process must not lease the shard again before that expiry either: the
store that holds the lease's token would take it at once, and a new worker would write the
shard while the old one's request is still out (at most one writer per shard past its
fence). The real Runner, Held, LeaseKeeper and reload over in-memory state tables with the
state table's fencing conditions (testing/memory_leases.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.runner.shard_thread import Owned
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .reloading import reloading_runner, rewrite
from .test_runner_outage import NAMES, NoParking
from .test_runner_reload import GatedReplicator, OnePageStreams

World = tuple[Runner, Path, threading.Event]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    path = tmp_path / "c.toml"
    rewrite(path)
    clock, go_on = ManualClock(), threading.Event()
    tables = {n: LeaseTable(clock) for n in NAMES}

    def connect(spec: RegionSpec) -> Region:
        store = MemoryStateStore(tables[spec.name], name=spec.name)
        return Region(spec, OnePageStreams(spec.name), store, GatedReplicator(go_on), NoParking())

    runner = reloading_runner(path, clock, connect)
    yield runner, path, go_on
    go_on.set()
    runner.shutdown()


def _pages_out_past_the_deadline(runner: Runner) -> dict[str, Owned]:
    """Every held shard's page is being written (held by the gate) when the deadline passes."""
    runner.balance()
    assert {o.region for o in runner.owned.values()} == set(NAMES)
    for name in NAMES:
        replicator = runner.regions[name].replicator
        gate = getattr(replicator, "current", None)
        assert isinstance(gate, GatedReplicator) and gate.entered.wait(30)
    held = {str(ref): o for ref, o in runner.owned.items() if o.region == "a"}
    deadline = min(o.lease.deadline() for o in held.values())
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    clock.t = deadline + 0.1  # the pages are still out: their leases are left to expire
    return held


def _taken_again_before_expiry(runner: Runner, before: dict[str, Owned]) -> list[str]:
    """Shards leased again while the old worker's thread is still in its page, before the
    old lease's expiry."""
    now = runner.clock.now()
    return sorted(
        str(ref)
        for ref, o in runner.owned.items()
        if str(ref) in before
        and before[str(ref)].thread.is_alive()
        and now < before[str(ref)].lease.until
        and o is not before[str(ref)]
    )


def test_a_shard_whose_page_outlived_a_table_rename_reload_is_not_leased_again_before_expiry(
    world: World,
) -> None:
    runner, path, _go_on = world
    before = _pages_out_past_the_deadline(runner)

    rewrite(path, extra='[table_names.Orders]\nb = "Orders-b"\n')  # renamed in b: every shard stops
    assert runner.reload_if_changed()
    assert not runner.owned and all(o.thread.is_alive() for o in before.values())
    runner.balance()

    assert _taken_again_before_expiry(runner, before) == []


def test_a_shard_whose_page_outlived_a_full_restart_is_not_leased_again_before_expiry(
    world: World,
) -> None:
    runner, path, _go_on = world
    before = _pages_out_past_the_deadline(runner)

    rewrite(path, extra="page_limit = 500\n")  # not a reshape: every shard worker restarts
    assert runner.reload_if_changed()
    assert not runner.owned and all(o.thread.is_alive() for o in before.values())
    runner.balance()

    assert _taken_again_before_expiry(runner, before) == []


def test_a_clean_stop_right_after_a_full_restart_does_not_release_a_lease_whose_page_is_out(
    world: World,
) -> None:
    """The stop hands back a restart's kept leases itself (``Runner.shutdown``), but not
    one left to expire: its page may still land until the lease runs out."""
    runner, path, _go_on = world
    before = _pages_out_past_the_deadline(runner)
    rewrite(path, extra="page_limit = 500\n")  # not a reshape: every shard worker restarts
    assert runner.reload_if_changed()
    # The state this test is about: no shard held, every old page still out.
    assert not runner.owned and all(o.thread.is_alive() for o in before.values())
    store = runner.regions["a"].state
    assert isinstance(store, MemoryStateStore)

    runner.shutdown()

    assert all(o.thread.is_alive() for o in before.values())  # still out after the stop
    now = runner.clock.now()
    released = [r for r, o in before.items() if store.table.leases[o.ref].expires_ms <= now * 1000]
    assert released == [], "a lease released while its page may still land"
