"""A runner stopped (SIGTERM) during a coordination round hands its leases back in every
region that answers, so that another worker takes its shards at once rather than a lease
later. Discovery stops retrying once the runner is stopping (runner/balancer.py), so one
dropped connection in that round proves no outage: the region is not marked unreachable
for it, and the shutdown's releases there are tried with the quick retries, bounded (a
region that answers none of them is then unreachable, and its other leases run out)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.reachability import TRANSIENT
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_discovery_under_throttling import CountingState, held, runner, streams  # noqa: F401 (the fixture)

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")


def test_a_runner_stopped_in_a_round_that_met_one_dropped_connection_releases_its_leases(
    runner: Runner,  # noqa: F811 (the fixture imported above)
) -> None:
    runner.balance()
    leased = held(runner, "b")
    assert len(leased) == 2
    streams(runner, "b").errors = [UnreachableError("connection closed")]
    runner.stop_soon()  # SIGTERM: waiting retries give up now
    runner.balance()  # the round that was under way
    # The state this test is about: b dropped one connection in that round, then answers.
    assert not streams(runner, "b").errors
    runner.shutdown()
    state = runner.regions["b"].state
    assert isinstance(state, CountingState)
    assert sorted(state.released, key=str) == leased


@dataclass
class Unanswering(CountingState):
    """A state table that stops answering (``down``) and counts the releases tried."""

    tried: list[ShardRef] = field(default_factory=list)

    def release(self, shard: ShardRef, owner: str) -> None:
        self.tried.append(shard)
        super().release(shard, owner)


def test_a_stopping_runner_waits_on_a_region_that_stopped_answering_once_not_per_lease(
    runner: Runner,  # noqa: F811 (the fixture imported above)
) -> None:
    b = Unanswering("b")
    runner.regions["b"] = dataclasses.replace(runner.regions["b"], state=b)
    runner.balance()
    leased = held(runner, "b")
    assert len(leased) == 2
    b.down = True
    runner.stop_soon()
    runner.shutdown()
    # The state this test is about: b answered none of the releases.
    assert b.tried and not b.released
    # The first was tried with the quick retries, then b counted as unreachable: the
    # second is left to expire, untried.
    assert b.tried == [leased[0]] * TRANSIENT.attempts
    assert not runner.reach.is_up("b")
    others = runner.regions["a"].state
    assert isinstance(others, CountingState) and len(others.released) == 2


class DroppingRelease(MemoryStateStore):
    """A state table whose next release (once ``armed``) loses its connection: before the
    table got it, or (``applied``) after the table applied it."""

    armed = False
    applied = False

    def release(self, shard: ShardRef, owner: str) -> None:
        if self.armed:
            self.armed = False
            if self.applied:  # the table applies the request as sent: its token
                sent = MemoryStateStore(self.table)
                sent.held[shard] = self.held[shard]
                sent.release(shard, owner)
            raise UnreachableError("connection dropped", region="a")
        super().release(shard, owner)


def keeper_holding_a0(applied: bool) -> tuple[LeaseKeeper, LeaseTable, DroppingRelease]:
    clock = ManualClock()
    table = LeaseTable(clock)
    store = DroppingRelease(table)
    keeper = LeaseKeeper("w1", "p", clock, 30.0)
    keeper.stores = {"a": store}
    assert keeper.acquire("a", A0) is not None
    keeper.forget(A0)
    store.armed, store.applied = True, applied
    return keeper, table, store


def test_a_release_whose_connection_dropped_before_the_table_is_sent_again() -> None:
    keeper, table, store = keeper_holding_a0(applied=False)
    token = table.leases[A0].token
    keeper.release(A0, "a")
    # The state this test is about: the first attempt never reached the table.
    assert not store.armed
    assert (table.leases[A0].expires_ms, table.leases[A0].token) == (0, token + 1)
    assert MemoryStateStore(table).acquire(A0, "w2", 1_000_500, 30_000)


def test_a_release_applied_whose_answer_was_lost_is_not_applied_twice() -> None:
    keeper, table, store = keeper_holding_a0(applied=True)
    token = table.leases[A0].token
    keeper.release(A0, "a")
    # The state this test is about: the first attempt was applied, its answer lost, and
    # the retry carried the same token: refused, the token moved once.
    assert not store.armed and A0 not in store.held
    assert (table.leases[A0].expires_ms, table.leases[A0].token) == (0, token + 1)
    other = MemoryStateStore(table)
    assert other.acquire(A0, "w2", 1_000_500, 30_000)
    # A copy of the release landing now (after the other worker's acquire) is refused.
    late = MemoryStateStore(table)
    late.held[A0] = ("w1", token)
    late.release(A0, "w1")
    assert (table.leases[A0].owner, table.leases[A0].expires_ms) == ("w2", 1_030_500)
