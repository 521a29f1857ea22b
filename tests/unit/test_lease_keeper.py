"""The lease keeper: a lease never outlives the worker id's claim, a failed renewal is
tried again well before the deadline, and renewals go on while a coordination round is
stuck (they do not wait behind discovery, reports or data)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import Shard, ShardRef
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_runner_outage import CONFIG, FakeReplicator, FakeStreams, NoParking

A0, A1 = (ShardRef("Orders", "arn:a/stream/Orders", f"a-{n}") for n in range(2))


def test_a_lease_renewed_late_in_a_slow_round_does_not_outlive_the_claim() -> None:
    """The issue's interleaving: Z heartbeats at 1010 (claim until 1040); its renewal of
    a-0 answers after 9 s, so a-1 is renewed at 1019. Z is then cut off. A successor with
    the same id takes the claim once it expired and acquires a-1: Z's last write must have
    started a full margin before that, so that it landed (or failed) by then."""
    clock = ManualClock()
    table = LeaseTable(clock)

    def slow_renewal_of_a0(call: str) -> None:
        if call == "renew" and clock.t == 1010.0:
            clock.t = 1019.0

    zombie = LeaseKeeper("w1", "z", clock, 30.0)
    zombie.stores = {"a": MemoryStateStore(table, slow_renewal_of_a0)}
    assert zombie.acquire("a", A0) and zombie.acquire("a", A1)
    clock.t = 1010.0
    zombie.renew_all()
    claim = zombie.claims["a"]
    assert clock.t == 1019.0 and claim == 1040.0  # the slow round happened
    assert all(lease.until <= claim for lease in zombie.leases.values())
    # Z is cut off; the successor waits for the claim, then takes the leases.
    successor = LeaseKeeper("w1", "s", clock, 30.0)
    successor.stores = {"a": MemoryStateStore(table)}
    clock.t = claim + 0.1
    successor.claim("a", threading.Event())
    taken = successor.acquire("a", A1)
    assert taken is not None
    last_write_started = zombie.leases[A1].deadline()
    assert last_write_started + zombie.leases[A1].margin <= clock.t


def test_the_same_id_does_not_take_a_live_lease_even_with_the_claim() -> None:
    clock = ManualClock()
    table = LeaseTable(clock)
    zombie = LeaseKeeper("w1", "z", clock, 30.0)
    zombie.stores = {"a": MemoryStateStore(table)}
    assert zombie.acquire("a", A0)
    table.workers.clear()  # the claim is gone (say, removed by hand): the lease still fences
    successor = LeaseKeeper("w1", "s", clock, 30.0)
    successor.stores = {"a": MemoryStateStore(table)}
    clock.t += 10
    assert successor.acquire("a", A0) is None
    clock.t += 21
    assert successor.acquire("a", A0) is not None


def test_a_failed_renewal_is_tried_again_at_the_next_tick_before_the_deadline() -> None:
    clock = ManualClock()
    failures = [UnreachableError("timeout", region="a") for _ in range(2)]

    def flaky(call: str) -> None:
        if call == "renew" and failures:
            raise failures.pop()

    keeper = LeaseKeeper("w", "i", clock, 30.0)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(clock), flaky)}
    lease = keeper.acquire("a", A0)
    assert lease is not None and lease.deadline() == 1022.5
    # Four ticks fit between a renewal and its deadline: three may fail in a row.
    assert (lease.deadline() - 1000.0) / keeper.tick >= 4
    clock.t += keeper.tick
    keeper.renew_all()  # the renewal and its one retry fail
    assert not failures and lease.until == 1030.0  # failed: kept, not dropped
    clock.t += keeper.tick
    keeper.renew_all()
    assert lease.until == clock.t + 30.0


@pytest.mark.parametrize("call", ["renew", "heartbeat"])
def test_a_renewal_that_fails_once_is_sent_again_in_the_same_tick(call: str) -> None:
    """A throttle or a dropped connection on the claim or a lease costs no tick: with ~10%
    of requests failing, a tick needing both would otherwise fail one time in five."""
    clock = ManualClock()
    failures: list[ThrottledError] = []

    def flaky(name: str) -> None:
        if name == call and failures:
            clock.t += 0.1  # the failed answer took a while: the retry's expiry is later
            raise failures.pop()

    keeper = LeaseKeeper("w", "i", clock, 30.0)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(clock), flaky)}
    lease = keeper.acquire("a", A0)
    assert lease is not None and lease.until == 1030.0
    failures.append(ThrottledError("throttled", region="a"))
    clock.t += keeper.tick
    keeper.renew_all()
    assert not failures  # the state this test is about: one request of the tick failed
    assert lease.until >= 1000.0 + keeper.tick + 30.0  # renewed in this tick
    assert lease.until == keeper.claims["a"]  # as far as the claim, never past it


@dataclasses.dataclass
class StuckStreams(FakeStreams):
    """Discovery that hangs once ``stuck`` is set (a slow region's DescribeStream)."""

    stuck: threading.Event = dataclasses.field(default_factory=threading.Event)
    free: threading.Event = dataclasses.field(default_factory=threading.Event)

    def shards(self, arn: str) -> list[Shard]:
        if self.stuck.is_set():
            self.free.wait(30)
        return super().shards(arn)


def test_leases_are_renewed_while_a_coordination_round_is_stuck() -> None:
    config = dataclasses.replace(CONFIG, lease_timeout_seconds=0.6)
    table = LeaseTable(SystemClock())
    streams = {n: StuckStreams(n) for n in ("a", "b", "c")}
    regions = {
        n: Region(RegionSpec(n), streams[n], MemoryStateStore(table), FakeReplicator(), NoParking())
        for n in streams
    }
    runner = Runner(config, worker_id="w", connect=lambda s, *_: regions[s.name])
    runner.regions = regions
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        give_up = time.monotonic() + 20
        while len(runner.owned) < 6 and time.monotonic() < give_up:
            time.sleep(0.01)
        assert len(runner.owned) == 6  # every shard leased before the rounds get stuck
        for s in streams.values():
            s.stuck.set()
        first = {ref: o.lease.until for ref, o in runner.owned.items()}
        while time.time() < max(first.values()) + 0.3:
            time.sleep(0.01)  # the rounds hang in discovery meanwhile
        assert all(o.lease.until > first[ref] for ref, o in runner.owned.items())
    finally:
        for s in streams.values():
            s.free.set()
        stop.set()
        thread.join(30)


def test_the_start_up_claim_tries_a_failed_request_again() -> None:
    clock = ManualClock()
    failures = [UnreachableError("timeout", region="a") for _ in range(2)]

    def flaky(call: str) -> None:
        if call == "heartbeat" and failures:
            raise failures.pop()

    keeper = LeaseKeeper("w", "i", clock, 30.0)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(clock), flaky)}
    keeper.claim("a", threading.Event())
    assert not failures and keeper.claims["a"] == 1030.0


def test_a_lease_keeps_its_margin_when_a_reload_shortens_the_lease() -> None:
    clock = ManualClock()
    keeper = LeaseKeeper("w", "i", clock, 30.0)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(clock))}
    lease = keeper.acquire("a", A0)
    assert lease is not None and lease.deadline() == 1022.5
    keeper.lease_seconds = 5.0  # a reload: new leases only
    assert lease.deadline() == 1022.5  # not moved later (a 5 s lease's margin is 1.25 s)


def test_a_claim_forgotten_by_a_reload_is_not_recorded_from_an_answer_still_out() -> None:
    """A reload changed region b (another endpoint): a heartbeat to b's old store answered
    after the reload must not count as a claim in b; one to a, out at the same time, does."""
    clock = ManualClock()
    table_a, table_b = LeaseTable(clock), LeaseTable(clock)
    keeper = LeaseKeeper("w", "w#1", clock, 30.0)

    def reload_meanwhile(call: str) -> None:
        if call == "heartbeat":
            keeper.forget_claim("b")  # while b's heartbeat is out

    keeper.stores = {
        "a": MemoryStateStore(table_a, reload_meanwhile),
        "b": MemoryStateStore(table_b, reload_meanwhile),
    }
    keeper.heartbeat("b")
    assert table_b.workers["w"][1] == 1030_000  # the old table took it (the state tested)
    assert "b" not in keeper.claims
    keeper.heartbeat("a")  # out while b's claim is forgotten again: a's answer counts
    assert keeper.claims["a"] == 1030.0


def test_a_lease_left_to_expire_is_not_taken_again_by_its_process_before_it_expires() -> None:
    """Whatever drops the shard (a hand-over, a reload): the store still holds the left
    lease's token, so only the keeper can keep a second thread off it until it expires."""
    clock = ManualClock()
    keeper = LeaseKeeper("w1", "w1#1", clock, 30.0)
    keeper.stores = {"a": MemoryStateStore(LeaseTable(clock))}
    lease = keeper.acquire("a", A0)
    assert lease is not None and lease.until == 1030.0
    keeper.forget(A0)  # dropped, its page still out past the deadline
    keeper.leave(A0, lease)
    clock.t = 1029.9
    assert keeper.acquire("a", A0) is None
    clock.t = 1030.0  # expired: nothing of the old thread can land any more
    assert keeper.acquire("a", A0) is not None
