"""A reload that gives a region another state table (another endpoint) must claim the
worker id in that table before a lease is taken there: a lease never outlives the worker
id's claim in its region (runner/leases.py). The real Runner, LeaseKeeper and reload over
in-memory state tables, one per (region, endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .reloading import reloading_runner, rewrite
from .test_runner_outage import NAMES, FakeReplicator, FakeStreams, NoParking

Tables = dict[tuple[str, str | None], LeaseTable]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Runner, Path, Tables]]:
    path = tmp_path / "c.toml"
    rewrite(path)
    clock = ManualClock()
    tables: Tables = {}

    def connect(spec: RegionSpec) -> Region:
        table = tables.setdefault((spec.name, spec.endpoint_url), LeaseTable(clock))
        store = MemoryStateStore(table, name=f"{spec.name}@{spec.endpoint_url}")
        return Region(spec, FakeStreams(spec.name), store, FakeReplicator(), NoParking())

    runner = reloading_runner(path, clock, connect)
    yield runner, path, tables
    runner.shutdown()


def _claim_covers_leases(runner: Runner, table: LeaseTable, region: str) -> bool:
    """The worker id is claimed in ``table`` at least as long as every lease held there."""
    leases = [o.lease.until for o in runner.owned.values() if o.region == region]
    claim_ms = table.workers.get(runner.worker_id, ("", 0))[1]
    return bool(leases) and all(until * 1000 <= claim_ms for until in leases)


def test_a_region_removed_then_added_with_another_endpoint_claims_the_id_in_its_new_table(
    world: tuple[Runner, Path, Tables],
) -> None:
    runner, path, tables = world
    runner.balance()
    assert {o.region for o in runner.owned.values()} == set(NAMES)
    assert _claim_covers_leases(runner, tables[("c", None)], "c")

    rewrite(path, ["a", "b"])  # c removed ...
    assert runner.reload_if_changed()
    assert "c" not in {o.region for o in runner.owned.values()}
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    clock.t += 5  # ... and added back, another state table behind it, soon after
    rewrite(path, endpoints={"c": "http://c-elsewhere:8000"})
    assert runner.reload_if_changed()
    runner.balance()

    new_table = tables[("c", "http://c-elsewhere:8000")]
    assert any(lease.owner == "w" for lease in new_table.leases.values())  # leased there
    assert _claim_covers_leases(runner, new_table, "c")


def test_a_full_restart_that_moves_a_regions_table_claims_the_id_in_its_new_table(
    world: tuple[Runner, Path, Tables],
) -> None:
    runner, path, tables = world
    runner.balance()
    assert _claim_covers_leases(runner, tables[("c", None)], "c")

    # Another endpoint for c and another page limit: not a reshape, every worker restarts.
    rewrite(path, endpoints={"c": "http://c-elsewhere:8000"}, extra="page_limit = 500\n")
    assert runner.reload_if_changed()
    assert runner.config.page_limit == 500 and not runner.owned
    runner.balance()

    new_table = tables[("c", "http://c-elsewhere:8000")]
    assert any(lease.owner == "w" for lease in new_table.leases.values())  # leased there
    assert _claim_covers_leases(runner, new_table, "c")
