"""A config reload that adds a region, with the real Runner, Held and ShardWorker over fake
regions: the running shard workers keep their pages and their threads, the replicator their
page writes through is closed only after that page, and they take the new target up."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.model import RegionSpec, TableNames
from dynamodb_replicator.core.ports import Deadline, TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.core.streams import Page, ShardRef
from dynamodb_replicator.ops.backfill import append_region
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.reloader import Reshape, reshape
from dynamodb_replicator.runner.replaceable import Replaceable
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock

from .fakes import PageReplicator
from .reloading import reloading_runner
from .test_runner_outage import CONFIG, NAMES, FakeState, FakeStreams, NoParking

SEQ = f"{1:021d}"
World = tuple[Runner, Path, dict[str, list[Region]], threading.Event]


class OnePageStreams(FakeStreams):
    """Each shard holds one record: read from the start, then nothing new."""

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        return f"{shard_id}|{after}"

    def read(self, iterator: str, limit: int = 1000) -> Page:
        shard_id, after = iterator.split("|")
        if after == "None":
            return Page([{"dynamodb": {"SequenceNumber": SEQ}}], f"{shard_id}|{SEQ}")
        return Page([], iterator)


@dataclass
class SavingState(FakeState):
    saved: dict[ShardRef, dict[str, str]] = field(default_factory=dict)

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved.get(shard, {}))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        self.saved.setdefault(shard, {}).update(positions)


@dataclass
class GatedReplicator(PageReplicator):
    """Holds every page until ``go_on``; refuses a page once closed, like a shut pool."""

    go_on: threading.Event
    entered: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    refused: list[str] = field(default_factory=list)

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        self.entered.set()
        self.go_on.wait()
        if self.closed:
            self.refused.append("cannot schedule new futures after shutdown")
            raise RuntimeError(self.refused[-1])
        return BatchResult({r: TargetResult(r, applied=len(records)) for r in regions or ()})

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def world(
    tmp_path: Path,
) -> Iterator[tuple[Runner, Path, dict[str, list[Region]], threading.Event]]:
    path = tmp_path / "c.toml"
    path.write_text(
        'tables = ["Orders"]\n' + "".join(f'[[regions]]\nname = "{n}"\n' for n in NAMES)
    )
    go_on = threading.Event()
    made: dict[str, list[Region]] = {}
    states: dict[str, SavingState] = {}

    def connect(spec: RegionSpec) -> Region:
        state = states.setdefault(spec.name, SavingState(spec.name))
        region = Region(spec, OnePageStreams(spec.name), state, GatedReplicator(go_on), NoParking())
        made.setdefault(spec.name, []).append(region)
        return region

    before = set(threading.enumerate())
    runner = reloading_runner(path, ManualClock(), connect)
    yield runner, path, made, go_on
    go_on.set()
    runner.stopping.set()
    for owned in runner.owned.values():
        owned.stop.set()
    for thread in threading.enumerate():  # none goes on (and logs) into the tests that follow
        if thread.name.startswith("shard-") and thread not in before:
            thread.join(10)


def saved(runner: Runner, region: str, ref: ShardRef) -> dict[str, str]:
    state = runner.regions[region].state
    assert isinstance(state, SavingState)
    return state.load(ref)


def test_a_page_in_flight_finishes_through_a_reload_that_adds_a_region(
    world: World,
) -> None:
    runner, path, made, go_on = world
    runner.balance()
    first = made["b"][0].replicator
    assert isinstance(first, GatedReplicator)
    assert first.entered.wait(30)  # a page of a shard of b is being written
    ref = next(ref for ref, o in runner.owned.items() if o.region == "b")
    before = runner.owned[ref]
    assert before.thread.is_alive() and not saved(runner, "b", ref)
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    # Near the lease's deadline: a reload that stops the workers waits for them briefly.
    clock.t = 1022.4
    append_region(path, RegionSpec("d"))  # add-region's edit
    assert runner.reload_if_changed()
    assert [s.name for s in runner.config.regions] == [*NAMES, "d"]
    assert not first.closed  # its pages are still out: the pool stays up
    go_on.set()
    after = runner.owned.get(ref)
    assert after is before and after.thread.is_alive()  # not restarted
    # The page finishes, then the worker takes the new target up from its checkpoint.
    give_up, poll = time.monotonic() + 30, threading.Event()
    while time.monotonic() < give_up and before.thread.is_alive():
        if set(saved(runner, "b", ref)) == {*NAMES, "d"} and first.closed:
            break
        poll.wait(0.01)
    assert saved(runner, "b", ref) == dict.fromkeys([*NAMES, "d"], SEQ)
    assert first.refused == [] and first.closed  # closed by the last page that used it
    replicator = runner.regions["b"].replicator
    assert isinstance(replicator, Replaceable) and replicator.current is made["b"][1].replicator


def test_only_region_and_table_changes_reload_without_restarting_every_worker() -> None:
    d = RegionSpec("d")
    grown = dataclasses.replace(CONFIG, regions=(*CONFIG.regions, d), tables=("Orders", "Users"))
    assert reshape(CONFIG, grown) == Reshape(added=("d",))
    assert reshape(grown, dataclasses.replace(grown, tables=("Users",))) == Reshape(
        stale_tables=frozenset({"Orders"})
    )
    assert reshape(grown, CONFIG) == Reshape(removed=("d",), stale_tables=frozenset({"Users"}))
    moved = RegionSpec("a", endpoint_url="http://elsewhere:8000")
    assert reshape(
        CONFIG, dataclasses.replace(CONFIG, regions=(moved, *CONFIG.regions[1:]))
    ) == Reshape(changed=("a",))
    renamed = dataclasses.replace(
        CONFIG.replication, names=TableNames((("Orders", "b", "Orders-b"),))
    )
    assert reshape(CONFIG, dataclasses.replace(CONFIG, replication=renamed)) == Reshape(
        stale_tables=frozenset({"Orders"})
    )
    assert reshape(CONFIG, dataclasses.replace(CONFIG, lease_timeout_seconds=60.0)) is None
    # A derived request timeout is halved once a region has a role (a credentials refresh
    # may come first): the running workers' clients were built for the longer one.
    role = RegionSpec("d", role=RoleSpec("arn:aws:iam::123456789012:role/r"))
    assert reshape(CONFIG, dataclasses.replace(CONFIG, regions=(*CONFIG.regions, role))) is None
