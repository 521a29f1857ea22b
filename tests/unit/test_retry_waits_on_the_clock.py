"""Every retry's wait goes by on the one clock it is given (the ``Clock`` port's ``wait``):
the lease keeper's same-tick retry (``leases.RETRY``) and the round's discovery retries
(``reachability.TRANSIENT``) on the keeper's and the runner's clock. Under a ManualClock no
real time goes by then, so the control-plane simulations run their seeds at the speed of
their code, not of the retries' real sleeps."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.leases import RETRY, LeaseKeeper
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_discovery_under_throttling import runner, streams  # noqa: F401 (the fixture)

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")


class RecordingClock(ManualClock):
    """A ManualClock that notes every wait asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.waits.append(seconds)
        return super().wait(seconds, stop)


def test_a_retry_given_a_clock_waits_on_it_and_a_set_stop_still_ends_it() -> None:
    clock = RecordingClock()
    answers: list[Exception | None] = [ThrottledError("slow down"), None]

    def flaky() -> str:
        error = answers.pop(0)
        if error is not None:
            raise error
        return "ok"

    backoff = Backoff(attempts=3, base=5.0, cap=5.0, rng=lambda _a, b: b)
    assert call_with_retries(flaky, backoff, clock=clock) == "ok"
    assert clock.waits == [5.0]
    stop = threading.Event()
    stop.set()
    with pytest.raises(ThrottledError):
        call_with_retries(flaky_once, backoff, stop=stop, clock=clock)
    assert clock.waits == [5.0, 5.0]  # asked once, then given up: the stop is set


def flaky_once() -> None:
    raise ThrottledError("slow down")


class ThrottledOnce(MemoryStateStore):
    """A state table whose next renewal (once ``armed``) is throttled."""

    armed = False

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        if self.armed:
            self.armed = False
            raise ThrottledError("UpdateItem: ThrottlingException", region="a")
        return super().renew(shard, owner, now_ms, duration_ms, order=order)


def test_the_keepers_same_tick_renewal_retry_waits_on_its_clock() -> None:
    clock = RecordingClock()
    table = LeaseTable(clock)
    store = ThrottledOnce(table)
    keeper = LeaseKeeper("w1", "p", clock, 30.0)
    keeper.stores = {"a": store}
    assert keeper.acquire("a", A0) is not None
    clock.t = 1005.0
    store.armed = True
    keeper.renew_all()
    # The state this test is about: the first renewal was throttled, the retry renewed.
    assert not store.armed and keeper.leases[A0].until == 1035.0
    assert len(clock.waits) == 1 and 0.0 <= clock.waits[0] <= RETRY.cap


def test_the_rounds_discovery_retry_waits_on_the_runners_clock(
    runner: Runner,  # noqa: F811 (the fixture imported above)
) -> None:
    clock = RecordingClock()
    runner.clock = runner.balancer.clock = clock
    runner.balance()
    streams(runner, "b").errors = [UnreachableError("connection closed")]
    runner.balance()
    # The state this test is about: b's discovery dropped a connection once, and was retried.
    assert not streams(runner, "b").errors and runner.reach.is_up("b")
    assert len(clock.waits) == 1
