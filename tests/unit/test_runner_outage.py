"""The runner's coordination with fake regions: an unreachable region at start and during
a run, the fair share of readable shards, config reloads retried, the lease's deadline."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.errors import ConfigError, TargetError, UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.ports import Deadline, TargetResult, deadline_at
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import Page, Shard, ShardRef
from dynamodb_replicator.ops.backfill import append_region
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.preflight import Checked, Checks, Schemas
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock

from .fakes import PageReplicator

NAMES = ("a", "b", "c")
CONFIG = RunnerConfig(tables=("Orders",), regions=tuple(RegionSpec(n) for n in NAMES))
SCHEMA: Schemas = {"Orders": (("pk", "HASH", "S"),)}


@dataclass
class FakeState:
    region: str
    down: bool = False
    leases: dict[ShardRef, str] = field(default_factory=dict)
    released: list[ShardRef] = field(default_factory=list)
    heartbeats: int = 0

    def _reach(self) -> None:
        if self.down:
            raise UnreachableError(f"{self.region} is out", region=self.region)

    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        *,
        instance: str = "",
        now_ms: int = 0,
        replacing: str = "",
        margin_ms: int = 0,
        order: int,
    ) -> None:
        self._reach()
        self.heartbeats += 1

    def live_workers(self, now_ms: int) -> list[str]:
        self._reach()
        return ["w"]

    def forget_worker(self, worker: str, *, instance: str, order: int) -> None:
        self._reach()

    def acquire(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, inherit: bool = False
    ) -> bool:
        self._reach()
        self.leases[shard] = owner
        return True

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        self._reach()
        return self.leases.get(shard) == owner

    def release(self, shard: ShardRef, owner: str) -> None:
        self._reach()
        self.released.append(shard)
        self.leases.pop(shard, None)

    def put(self, item: Mapping[str, Any]) -> None:
        self._reach()

    def load(self, shard: ShardRef) -> dict[str, str]:
        return {}

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        pass


@dataclass
class FakeStreams:
    region: str
    fail: TargetError | None = None

    def stream_arns(self, table: str) -> list[str]:
        return [f"arn:{self.region}/stream/{table}"]

    def shards(self, arn: str) -> list[Shard]:
        if self.fail is not None:
            raise self.fail
        return [Shard(f"{self.region}-{n}", None, "1", None) for n in range(2)]

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        return "it"

    def read(self, iterator: str, limit: int = 1000) -> Page:
        return Page([], iterator)  # an open shard with nothing new


@dataclass
class FakeReplicator(PageReplicator):
    calls: list[tuple[list[str], Deadline]] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)  # as given, asked again later
    entered: threading.Event = field(default_factory=threading.Event)
    go_on: threading.Event | None = None

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        self.calls.append((sorted(regions or ()), deadline))
        self.deadlines.append(deadline)
        self.entered.set()
        if self.go_on is not None:
            self.go_on.wait()
        return BatchResult({r: TargetResult(r, applied=len(records)) for r in regions or ()})


class NoParking:
    """A parking lot that holds nothing."""

    def park(self, parked: ParkedRecord) -> None:
        raise AssertionError("nothing is parked in these tests")

    def parked(self, tables: Sequence[str] | None = None) -> list[ParkedRecord]:
        return []

    def remove(self, parked: ParkedRecord) -> None:
        pass


def fake_region(name: str) -> Region:
    return Region(
        RegionSpec(name), FakeStreams(name), FakeState(name), FakeReplicator(), NoParking()
    )


def state(runner: Runner, name: str) -> FakeState:
    found = runner.regions[name].state
    assert isinstance(found, FakeState)
    return found


def runner_over(region: Callable[[str], Region]) -> Iterator[Runner]:
    """A runner (worker ``w``, a manual clock) over NAMES, each region, and each one it
    connects to again, made by ``region``; its shard threads told to stop after the test."""
    runner = Runner(
        CONFIG, worker_id="w", clock=ManualClock(), connect=lambda s, *_: region(s.name)
    )
    runner.regions = {n: region(n) for n in NAMES}
    yield runner
    runner.stopping.set()
    for owned in runner.owned.values():
        owned.stop.set()


@pytest.fixture
def runner() -> Iterator[Runner]:
    yield from runner_over(fake_region)


def held(runner: Runner, region: str) -> set[str]:
    return {ref.shard_id for ref, o in runner.owned.items() if o.region == region}


def record(seq: int) -> dict[str, Any]:
    return {"dynamodb": {"SequenceNumber": f"{seq:021d}"}}


def test_an_unreachable_region_does_not_shrink_the_share_of_the_others(runner: Runner) -> None:
    runner.balance()
    assert len(runner.owned) == 6
    state(runner, "a").down = True  # the first region goes out
    for _ in range(3):
        runner.balance()
    # Every readable shard is still read; none was handed over.
    assert held(runner, "b") == {"b-0", "b-1"} and held(runner, "c") == {"c-0", "c-1"}
    assert not state(runner, "b").released and not state(runner, "c").released
    assert not runner.reach.is_up("a")


def test_a_failed_discovery_does_not_shrink_the_set_of_shards(runner: Runner) -> None:
    runner.balance()
    streams = runner.regions["b"].streams
    assert isinstance(streams, FakeStreams)
    streams.fail = TargetError("DescribeStream failed")
    runner.balance()
    assert len(runner.owned) == 6 and not any(state(runner, n).released for n in NAMES)


def test_pages_go_only_to_reachable_targets_with_the_lease_deadline(runner: Runner) -> None:
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    runner.balance()  # leases until 1000 + 30 s
    runner.reach.failed("a", "connection refused")
    ref = next(ref for ref, o in runner.owned.items() if o.region == "b")
    result = runner.owned[ref].worker.process("Orders", [record(5)], ["a", "c"])
    replicator = runner.regions["b"].replicator
    assert isinstance(replicator, FakeReplicator)
    # 30 s lease, a quarter of it as margin: no write starts after 1022.5.
    assert [(r, deadline_at(d, clock.now())) for r, d in replicator.calls] == [(["c"], 1022.5)]
    assert result.failed_sequence("a") == f"{5:021d}" and result.failed_sequence("c") is None
    clock.t = 1010.0
    runner.reach.reached("a")
    runner.keeper.renew_all()  # the keeper's tick: the deadline moves with the lease
    # Also for a page that was already being written: its writer asks before each write.
    assert deadline_at(replicator.deadlines[0], clock.now()) == 1032.5
    runner.owned[ref].worker.process("Orders", [record(6)], ["a"])
    regions, deadline = replicator.calls[-1]
    assert (regions, deadline_at(deadline, clock.now())) == (["a"], 1032.5)


def test_a_dropped_shard_keeps_its_lease_while_a_page_is_in_flight_past_the_deadline(
    runner: Runner,
) -> None:
    replicator = runner.regions["b"].replicator
    assert isinstance(replicator, FakeReplicator)
    replicator.go_on = threading.Event()
    runner.balance()
    ref = next(ref for ref, o in runner.owned.items() if o.region == "b")
    worker = runner.owned[ref].worker
    page = threading.Thread(target=worker.process, args=("Orders", [record(5)], ["c"]), daemon=True)
    page.start()
    assert replicator.entered.wait(30)
    owned = runner.owned[ref]
    # The page runs on the thread the runner knows as the shard's: the shard thread the
    # fixture started idles and, once stopped, may end before the drop looks at it.
    owned.thread = page
    owned.lease.until = 900.0  # the deadline has passed with the page still out
    assert page.is_alive()
    try:
        runner._drop(ref, release=True)
    finally:
        replicator.go_on.set()
    assert ref not in state(runner, "b").released  # left to expire, never handed over early
    assert state(runner, "b").leases[ref] == "w"


def test_an_unreachable_region_at_start_is_reported_and_checked_again(runner: Runner) -> None:
    answers: list[Exception | None] = [UnreachableError("still out"), None]

    def check_region(
        spec: RegionSpec, config: RunnerConfig, known: Mapping[str, Schemas]
    ) -> Schemas:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return SCHEMA

    out = Checked({"b": SCHEMA, "c": SCHEMA}, {"a": "cannot reach a (AWS): refused"})
    runner.checks = Checks(all=lambda config: out, region=check_region)
    runner.regions = {}
    runner.start()
    runner.regions = {n: fake_region(n) for n in NAMES}
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    assert runner.reach.down()["a"].reason == "cannot reach a (AWS): refused"
    assert scrape(runner) == {"a": 0.0, "b": 1.0, "c": 1.0}
    runner.balance()
    assert state(runner, "a").heartbeats == 0 and held(runner, "a") == set()
    assert held(runner, "b") and held(runner, "c")
    runner.check_down()  # not due yet: no check
    assert len(answers) == 2
    clock.t += 1
    runner.check_down()  # fails again: checked later, on the backoff's schedule
    assert len(answers) == 1 and not runner.reach.is_up("a")
    clock.t += 60
    runner.check_down()
    runner.balance()
    assert runner.reach.is_up("a") and held(runner, "a") == {"a-0", "a-1"}
    assert scrape(runner)["a"] == 1.0


def scrape(
    runner: Runner, metric: str = "dynamodb_replicator_region_reachable"
) -> dict[str, float]:
    """The runner's samples named ``metric`` (a counter's with ``_total``), by region."""
    return {
        sample.labels["region"]: sample.value
        for family in runner.metrics.registry.collect()
        for sample in family.samples
        if sample.name == metric
    }


def test_a_failed_reload_is_tried_again_until_the_file_loads(
    runner: Runner, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'tables = ["Orders"]\n' + "".join(f'[[regions]]\nname = "{n}"\n' for n in NAMES)
    )
    failures = [ConfigError("throttled while checking")]

    def check_all(config: RunnerConfig) -> Checked:
        if failures:
            raise failures.pop()
        return Checked(dict.fromkeys((s.name for s in config.regions), SCHEMA))

    reloading = Runner(
        CONFIG,
        worker_id="w",
        clock=runner.clock,
        config_path=str(path),
        connect=lambda s, *_: fake_region(s.name),
        checks=Checks(all=check_all),
    )
    append_region(path, RegionSpec("d"))  # add-region's edit
    assert not reloading.reload_if_changed()  # the check failed: the old config runs
    assert [s.name for s in reloading.config.regions] == list(NAMES)
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    clock.t += 60  # the file is unchanged; the reload is tried again all the same
    assert reloading.reload_if_changed()
    assert [s.name for s in reloading.config.regions] == [*NAMES, "d"]
    assert not reloading.reload_if_changed()  # loaded: not again


def test_add_region_replaces_the_config_file_instead_of_writing_into_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('tables = ["Orders"]\n[[regions]]\nname = "a"\n')
    path.chmod(0o640)
    before = os.stat(path)
    assert append_region(path, RegionSpec("b", "http://127.0.0.1:1"))
    after = os.stat(path)
    # A new file renamed over the old one: a reader sees the old text or the new, whole.
    assert after.st_ino != before.st_ino and after.st_mode == before.st_mode
    assert path.read_text().endswith('name = "b"\nendpoint_url = "http://127.0.0.1:1"\n')
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]
