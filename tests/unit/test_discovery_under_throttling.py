"""Stream discovery that meets a throttle, an HTTP 5xx or a dropped connection retries it
(counted); the region stays reachable, its leases renewed and its pairs written. Only a
region that still cannot be connected to after the quick retries is marked unreachable."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dynamodb_replicator.core.errors import (
    ServerError,
    TargetError,
    ThrottledError,
    UnreachableError,
)
from dynamodb_replicator.core.streams import Shard, ShardRef
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock

from .test_runner_outage import (
    CONFIG,
    FakeReplicator,
    FakeState,
    FakeStreams,
    NoParking,
    record,
    runner_over,
    scrape,
)


@dataclass
class FlakyStreams(FakeStreams):
    """Streams whose DescribeStream answers with the errors in ``errors`` first, in order."""

    errors: list[TargetError] = field(default_factory=list)

    def shards(self, arn: str) -> list[Shard]:
        if self.errors:
            raise self.errors.pop(0)
        return super().shards(arn)


@dataclass
class CountingState(FakeState):
    renewals: list[ShardRef] = field(default_factory=list)

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        self.renewals.append(shard)
        return super().renew(shard, owner, now_ms, duration_ms, order=order)


def region(name: str) -> Region:
    return Region(
        CONFIG.region(name),
        FlakyStreams(name),
        CountingState(name),
        FakeReplicator(),
        NoParking(),
    )


@pytest.fixture
def runner() -> Iterator[Runner]:
    yield from runner_over(region)


def streams(runner: Runner, name: str) -> FlakyStreams:
    found = runner.regions[name].streams
    assert isinstance(found, FlakyStreams)
    return found


def held(runner: Runner, name: str) -> list[ShardRef]:
    return sorted((ref for ref, o in runner.owned.items() if o.region == name), key=str)


def test_one_throttled_discovery_leaves_the_region_worked(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    runner.balance()
    assert len(held(runner, "b")) == 2
    streams(runner, "b").errors = [ThrottledError("DescribeStream: ThrottlingException")]
    with caplog.at_level(logging.INFO):
        runner.balance()
    # The state this test is about: b's discovery met a throttle in this round.
    assert not streams(runner, "b").errors
    assert scrape(runner, "dynamodb_replicator_discovery_retries_total") == {"b": 1.0}
    assert runner.reach.is_up("b")
    assert scrape(runner, "dynamodb_replicator_region_reachable")["b"] == 1.0
    runner.balance()  # the next round's heartbeats tell ``status`` the regions it cannot reach
    assert runner.keeper.unreachable == {}
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(held(runner, "b")) == 2 and len(runner.owned) == 6
    # Its leases are renewed, and pages from the other regions are written into it.
    b_state = runner.regions["b"].state
    assert isinstance(b_state, CountingState)
    clock = runner.clock
    assert isinstance(clock, ManualClock)
    clock.t += 1.0  # the keeper's next tick
    runner.keeper.renew_all()
    assert sorted(b_state.renewals, key=str) == held(runner, "b")
    a_shard = held(runner, "a")[0]
    result = runner.owned[a_shard].worker.process("Orders", [record(5)], ["b", "c"])
    replicator = runner.regions["a"].replicator
    assert isinstance(replicator, FakeReplicator)
    assert replicator.calls[-1][0] == ["b", "c"] and result.failed_sequence("b") is None


def test_a_region_that_keeps_answering_busy_stays_reachable(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    runner.balance()
    streams(runner, "b").errors = [ServerError("DescribeStream: 500")] * 10
    with caplog.at_level(logging.WARNING):
        runner.balance()
    retried = scrape(runner, "dynamodb_replicator_discovery_retries_total")
    assert retried == {"b": 3.0}  # four attempts, the last one failed as well
    assert runner.reach.is_up("b") and len(held(runner, "b")) == 2
    # Warnings only: the shard threads the first round started log "shard leased" (INFO,
    # region b) whenever they get to it, also during the second round.
    warned = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and getattr(r, "region", None) == "b"
    ]
    assert warned and "not marked unreachable" in warned[0].getMessage()


def test_a_region_that_cannot_be_connected_to_after_the_retries_is_unreachable(
    runner: Runner,
) -> None:
    runner.balance()
    streams(runner, "b").errors = [UnreachableError("connection refused")] * 4
    runner.balance()
    assert not runner.reach.is_up("b")
    assert scrape(runner, "dynamodb_replicator_region_reachable")["b"] == 0.0
    assert runner.reach.down()["b"].reason == "connection refused"
    runner.balance()
    assert list(runner.keeper.unreachable) == ["b"]  # what ``status`` is told


def test_a_dropped_connection_once_is_retried_not_an_outage(runner: Runner) -> None:
    runner.balance()
    streams(runner, "b").errors = [UnreachableError("connection closed")] * 3
    runner.balance()
    assert runner.reach.is_up("b") and not streams(runner, "b").errors


@dataclass
class FlakyWorkers(CountingState):
    """A state table whose reading of the live workers answers with ``errors`` first."""

    errors: list[TargetError] = field(default_factory=list)

    def live_workers(self, now_ms: int) -> list[str]:
        if self.errors:
            raise self.errors.pop(0)
        return super().live_workers(now_ms)


def test_a_dropped_connection_once_on_the_rounds_worker_count_is_not_an_outage(
    runner: Runner,
) -> None:
    runner.balance()
    assert len(held(runner, "b")) == 2
    flaky = FlakyWorkers("b")
    runner.regions["b"] = Region(
        CONFIG.region("b"), FlakyStreams("b"), flaky, FakeReplicator(), NoParking()
    )
    flaky.errors = [UnreachableError("connection closed")]
    runner.balance()
    # The state this test is about: the round's one request to count b's live workers
    # met a dropped connection, and b answers every other request.
    assert not flaky.errors
    assert runner.reach.is_up("b")


def test_a_stopping_runner_cuts_discovery_retries_short(runner: Runner) -> None:
    runner.balance()
    streams(runner, "b").errors = [UnreachableError("read timeout")] * 4
    runner.stop_soon()  # SIGTERM: waiting retries give up now
    assert runner.stopping.is_set()
    runner.balance()  # the round that was under way
    # The state this test is about: b's discovery failed while the runner was stopping.
    assert len(streams(runner, "b").errors) < 4
    assert len(streams(runner, "b").errors) == 3, "retried after the stop"
