"""A reload that gives a region another state table (another endpoint) must claim the
worker id in that table before a lease is taken there: a lease never outlives the worker
id's claim in its region (runner/leases.py). The real Runner, LeaseKeeper and reload over
in-memory state tables, one per (region, endpoint)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.preflight import Checked, Checks
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_runner_outage import CONFIG, NAMES, SCHEMA, Clock, FakeReplicator, FakeStreams, NoParking

Tables = dict[tuple[str, str | None], LeaseTable]


def _write(path: Path, regions: Sequence[str], *, c_endpoint: str = "", extra: str = "") -> None:
    text = 'tables = ["Orders"]\n' + extra
    for name in regions:
        text += f'[[regions]]\nname = "{name}"\n'
        if name == "c" and c_endpoint:
            text += f'endpoint_url = "{c_endpoint}"\n'
    stamp = (os.stat(path).st_mtime_ns if path.exists() else 0) + 1_000_000_000
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Runner, Path, Tables]]:
    path = tmp_path / "c.toml"
    _write(path, NAMES)
    clock = Clock()
    tables: Tables = {}

    def connect(spec: RegionSpec, *_: object) -> Region:
        table = tables.setdefault((spec.name, spec.endpoint_url), LeaseTable(clock))
        store = MemoryStateStore(table, name=f"{spec.name}@{spec.endpoint_url}")
        return Region(spec, FakeStreams(spec.name), store, FakeReplicator(), NoParking())

    def check_all(config: RunnerConfig) -> Checked:
        return Checked(dict.fromkeys((s.name for s in config.regions), SCHEMA))

    runner = Runner(
        CONFIG,
        worker_id="w",
        clock=clock,
        config_path=str(path),
        connect=connect,
        checks=Checks(all=check_all),
    )
    runner.regions = runner._regions(CONFIG)
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

    _write(path, ["a", "b"])  # c removed ...
    assert runner.reload_if_changed()
    assert "c" not in {o.region for o in runner.owned.values()}
    clock = runner.clock
    assert isinstance(clock, Clock)
    clock.t += 5  # ... and added back, another state table behind it, soon after
    _write(path, NAMES, c_endpoint="http://c-elsewhere:8000")
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
    _write(path, NAMES, c_endpoint="http://c-elsewhere:8000", extra="page_limit = 500\n")
    assert runner.reload_if_changed()
    assert runner.config.page_limit == 500 and not runner.owned
    runner.balance()

    new_table = tables[("c", "http://c-elsewhere:8000")]
    assert any(lease.owner == "w" for lease in new_table.leases.values())  # leased there
    assert _claim_covers_leases(runner, new_table, "c")
