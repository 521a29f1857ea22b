"""The control path under adversarial interleavings (issue #23's review): the real lease
keeper over the in-memory state table, each interleaving forced deterministically through
the store's ``before`` hook, a clock hook, or a delayed answer. Each test states the
guarantee (docs/concepts/guarantees.md) it holds the code to."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Mapping

from dynamodb_replicator.awslambda.handler import deadline_of
from dynamodb_replicator.awslambda.settings import settings_from_env
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import Page, ShardRef
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.preflight import Checked
from dynamodb_replicator.runner.reconfigure import restart_all
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .test_runner_outage import (
    CONFIG,
    NAMES,
    SCHEMA,
    FakeReplicator,
    FakeStreams,
    NoParking,
    record,
)

ROLE = "arn:aws:iam::111122223333:role/replicator"
A0, A1 = (ShardRef("Orders", "arn:a/stream/Orders", f"a-{n}") for n in range(2))


class HookedClock(ManualClock):
    """A stepped clock; ``hook`` runs once, at the next reading (a moment when the reading
    thread holds no lock: the other threads' steps are run there)."""

    def __init__(self, t: float = 1000.0) -> None:
        super().__init__(t)
        self.hook: Callable[[], None] | None = None

    def now(self) -> float:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return self.t


def test_a_tick_stalled_across_a_drop_and_reacquire_leaves_the_dropped_lease_alone() -> None:
    """The round thread hands a-1 over (``forget``; its thread, still in a request, outlives
    the join to the deadline 1022.5, so the lease is left to expire and its token kept),
    and a later round, its share grown back, takes a-1 again with that token (lease L2).
    The keeper's tick, stalled behind a slow renewal of a-0, still holds the old Lease
    object L1 in its snapshot: it finds a-1 in ``leases`` (L2), renews it and moves L1's
    expiry. The dropped thread's deadline moves on with it, so it may start writes again;
    when a-1 is handed over once more (released: L2's own thread has ended), another
    worker acquires it while the dropped thread may still start writes. (The reload path
    is spared: it closes the old replicators, waiting for their pages, before taking the
    shards again.)"""
    clock = HookedClock()
    table = LeaseTable(clock)
    keeper = LeaseKeeper("w1", "p", clock, 30.0)

    def round_thread_meanwhile() -> None:
        keeper.forget(A1)  # a-1 is handed over ...
        clock.t = 1022.6  # ... its join ends at the deadline, the thread still in a request
        assert keeper.acquire("a", A1) is not None  # a later round takes it again (token)

    def slow_renewal_of_a0(call: str) -> None:
        if call == "renew" and clock.t == 1010.0:
            clock.t = 1019.0
            clock.hook = round_thread_meanwhile  # runs at the tick's next clock reading

    keeper.stores = {"a": MemoryStateStore(table, slow_renewal_of_a0)}
    assert keeper.acquire("a", A0) and keeper.acquire("a", A1)
    dropped = keeper.leases[A1]
    assert dropped.deadline() == 1022.5
    clock.t = 1010.0
    keeper.renew_all()  # the stalled tick
    assert keeper.leases[A1] is not dropped  # the state the test is about: re-acquired
    # a-1 is handed over (its new thread ended, so the lease is released) ...
    keeper.forget(A1)
    keeper.release(A1, "a")
    other = LeaseKeeper("w2", "q", clock, 30.0)
    other.stores = {"a": MemoryStateStore(table)}
    clock.t = 1023.0
    assert other.acquire("a", A1) is not None
    # ... and the dropped thread must not start a write after that.
    assert dropped.deadline() <= clock.t, (
        f"the dropped lease's deadline moved to {dropped.deadline()}: its thread may start "
        f"writes after another worker acquired the shard at {clock.t}"
    )


class AnswerLate(MemoryStateStore):
    """A heartbeat applied at once whose answer comes later for the named threads."""

    def __init__(self, table: LeaseTable, before: Callable[[str], None]) -> None:
        super().__init__(table, before)
        self.applied: dict[str, threading.Event] = {}
        self.answer: dict[str, threading.Event] = {}

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
        super().heartbeat(
            worker,
            expires_ms,
            unreachable,
            instance=instance,
            now_ms=now_ms,
            replacing=replacing,
            margin_ms=margin_ms,
            order=order,
        )
        me = threading.current_thread().name
        if me in self.applied:
            self.applied[me].set()
            assert self.answer[me].wait(10)


def test_two_heartbeats_answered_out_of_order_leave_no_lease_past_the_claim() -> None:
    """The keeper's tick heartbeats at 1000 (claim until 1030); its request is slow to
    reach the table. At 1006 the round thread's acquire finds the claim running low and
    heartbeats too (until 1036): applied first, answered last. a-0's new lease must not
    outlive the claim the table keeps (else a successor with the same id claims the id
    while the lease runs; only the lease's own expiry then keeps it off a-0)."""
    clock = HookedClock(990.0)
    table = LeaseTable(clock)
    round_applied = threading.Event()
    tick_sent = threading.Event()

    def tick_is_slow(call: str) -> None:
        if call == "heartbeat" and threading.current_thread().name == "tick":
            tick_sent.set()
            assert round_applied.wait(10)  # reaches the table after the round's

    store = AnswerLate(table, tick_is_slow)
    keeper = LeaseKeeper("w1", "p", clock, 30.0)
    keeper.stores = {"a": store}
    keeper.heartbeat("a")
    assert keeper.claims["a"] == 1020.0
    store.applied["round"], store.answer["round"] = round_applied, threading.Event()
    clock.t = 1000.0
    tick = threading.Thread(target=keeper.renew_all, name="tick")
    tick.start()
    assert tick_sent.wait(10)
    clock.t = 1006.0
    taken: list[object] = []
    acquire = threading.Thread(target=lambda: taken.append(keeper.acquire("a", A0)), name="round")
    acquire.start()
    tick.join(10)
    assert not tick.is_alive()
    store.answer["round"].set()  # the round's answer comes last
    acquire.join(10)
    assert taken and taken[0] is not None  # the state the test is about: a-0 leased
    claim_ms = table.workers["w1"][1]
    # The slow tick's heartbeat (until 1030) was applied last, and did not shorten the claim.
    assert claim_ms == 1036_000
    lease_ms = table.leases[A0].expires_ms
    assert lease_ms <= claim_ms, f"lease until {lease_ms} outlives the claim until {claim_ms}"


class _Invocation:
    """A Lambda context with the template's shortest function timeout left (10 s)."""

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def test_a_lambda_write_in_another_account_ends_before_the_invocation_does() -> None:
    """The runner counts a region with a role twice (an STS refresh inside the call:
    ``RunnerConfig.request_lifetime``); the handler counts it once. With the template's
    shortest timeout (10 s) and the default request timeout (5 s), the last write starts
    at 4 s (10 - the 1 s margin - 5) and may end at 14 s: Lambda times the invocation out
    while the write is out and retries the batch; the retry may settle before that put
    lands, and nobody settles it after."""
    env = {
        "REPLICATOR_SOURCE_REGION": "eu-west-1",
        "REPLICATOR_REGIONS": "eu-west-1,us-east-1",
        "REPLICATOR_ROLES": json.dumps({"us-east-1": {"role_arn": ROLE}}),
    }
    settings = settings_from_env(env)
    assert settings.roles  # the state the test is about: a target in another account
    timeout = settings.replication.request_timeout_seconds
    started = 1000.0
    last_write = deadline_of(_Invocation(), started, settings.request_lifetime)
    assert last_write is not None
    lifetime = 2 * timeout  # the STS request, then the write itself, each up to the timeout
    assert last_write + lifetime <= started + 10.0, (
        f"a write started at {last_write - started:g} s may end at "
        f"{last_write + lifetime - started:g} s, after the 10 s invocation ended"
    )


@dataclasses.dataclass
class OnePageStreams(FakeStreams):
    """Region b's first read returns one record; the rest of the time nothing new."""

    served: bool = False

    def read(self, iterator: str, limit: int = 1000) -> Page:
        if self.region == "b" and not self.served:
            self.served = True
            return Page([record(5)], iterator)
        return super().read(iterator, limit)


def test_a_shutdown_with_a_page_out_past_the_deadline_keeps_the_claim_while_the_lease_lives() -> (
    None
):
    """A page of b's shard is out when the runner stops, past the lease's deadline: the
    lease is left to expire (not released), as the Guarantees say. But the worker's claim
    is removed at once: the lease now outlives its worker id's claim (a process restarted
    with the same id claims the id at once; only the lease's own expiry keeps it off)."""
    clock = ManualClock()
    tables = {n: LeaseTable(clock) for n in NAMES}
    go_on = threading.Event()
    replicator = FakeReplicator(go_on=go_on)
    regions = {
        n: Region(
            RegionSpec(n),
            OnePageStreams(n),
            MemoryStateStore(tables[n]),
            replicator if n == "b" else FakeReplicator(),
            NoParking(),
        )
        for n in NAMES
    }
    runner = Runner(CONFIG, worker_id="w", clock=clock, connect=lambda s, *_: regions[s.name])
    runner.regions = regions
    try:
        runner.balance()
        assert replicator.entered.wait(30)  # b's page is out
        clock.t = 1023.0  # past the deadline (1022.5), before the expiry (1030)
        runner.shutdown()
    finally:
        go_on.set()
    leases = tables["b"].leases.items()
    live = {ref: lease.expires_ms for ref, lease in leases if lease.expires_ms > 1023_000}
    assert live  # the state the test is about: a lease left to expire
    claim = tables["b"].workers.get("w", ("", 0))[1]
    assert all(expires <= claim for expires in live.values()), (
        f"leases live until {sorted(live.values())}, the worker's claim until {claim}"
    )


def test_a_reload_to_another_state_table_claims_the_worker_id_there_before_leasing() -> None:
    """The config's ``state_table`` changes while the runner runs: the leases are taken
    again in the new table (the old ones are left to expire), but the keeper still has
    the old table's claim, fresh enough that ``acquire`` does not heartbeat: the new
    table holds live leases of a worker id nobody claimed there."""
    clock = ManualClock()
    tables = {(n, t): LeaseTable(clock) for n in NAMES for t in ("state", "moved")}

    def region(name: str, config: RunnerConfig) -> Region:
        store = MemoryStateStore(tables[name, config.state_table])
        return Region(RegionSpec(name), FakeStreams(name), store, FakeReplicator(), NoParking())

    first = dataclasses.replace(CONFIG, state_table="state")
    runner = Runner(first, worker_id="w", clock=clock, connect=lambda s, c, *_: region(s.name, c))
    runner.regions = {n: region(n, first) for n in NAMES}
    try:
        runner.balance()
        assert len(runner.owned) == 6
        moved = dataclasses.replace(first, state_table="moved")
        restart_all(runner, moved, Checked({n: SCHEMA for n in NAMES}))
        clock.t = 1005.0
        runner.balance()
        new = tables["a", "moved"]
        assert new.leases  # the state the test is about: leases taken in the new table
        claim = new.workers.get("w", ("", 0))[1]
        expiries = sorted(lease.expires_ms for lease in new.leases.values())
        assert all(expires <= claim for expires in expiries), (
            f"leases in the new table until {expiries}, the worker's claim there until {claim}"
        )
    finally:
        runner.shutdown()
