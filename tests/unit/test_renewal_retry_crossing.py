"""A claim heartbeat or a lease renewal sent again at once in the same tick
(``leases.RETRY``) while its first attempt, whose connection dropped, is still on its way
to the table, and lands after the retry: the table keeps the larger expiry (renewals and
heartbeats only ever raise it), so the keeper's deadlines stay within what the table holds;
and a renewal landing after a release is refused (the release moves the token). The real
lease keeper over the in-memory state table; each
interleaving forced through the store, within the timing assumptions
(docs/concepts/guarantees.md: a request lands within the request timeout of its send)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

A0, A1 = (ShardRef("Orders", "arn:a/stream/Orders", f"a-{n}") for n in range(2))
REQUEST_TIMEOUT = 5.0  # the default for the 30 s lease (margin 7.5 s)


S = TypeVar("S", bound=MemoryStateStore)


def keeper_holding_a0(
    store_type: Callable[[LeaseTable, ManualClock], S],
) -> tuple[ManualClock, LeaseTable, S, LeaseKeeper]:
    """At 1000 s, w1's keeper (30 s leases) over region a's store, made by ``store_type``,
    holds its claim and a-0 until 1030."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    store = store_type(table, clock)
    keeper = LeaseKeeper("w1", "p", clock, 30.0)
    keeper.stores = {"a": store}
    assert keeper.acquire("a", A0) is not None
    return clock, table, store, keeper


class DroppedThenLanding(MemoryStateStore):
    """Once ``armed``: the next heartbeat's connection drops 3 s after it was sent (the
    client sees UnreachableError), but the table still holds the request and applies it
    right after the following heartbeat, the retry: 3.x s after its send, within the
    request timeout."""

    def __init__(self, table: LeaseTable, clock: ManualClock) -> None:
        super().__init__(table)
        self.clock = clock
        self.armed = False
        self.held_back: tuple[str, int, dict[str, object]] | None = None
        self.sent_at = 0.0

    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        **kwargs: object,
    ) -> None:
        if self.armed:
            self.armed = False
            self.held_back, self.sent_at = (worker, expires_ms, kwargs), self.clock.now()
            self.clock.t += 3.0
            raise UnreachableError("connection dropped", region="a")
        super().heartbeat(worker, expires_ms, unreachable, **kwargs)  # type: ignore[arg-type]
        if self.held_back is not None:
            worker, expires, rest = self.held_back
            self.held_back = None
            assert self.clock.now() < self.sent_at + REQUEST_TIMEOUT  # within the assumptions
            super().heartbeat(worker, expires, unreachable, **rest)  # type: ignore[arg-type]


def test_a_heartbeat_landing_after_its_same_tick_retry_leaves_no_lease_past_the_claim() -> None:
    clock, table, store, keeper = keeper_holding_a0(DroppedThenLanding)
    assert table.workers["w1"][1] == 1030_000 and table.leases[A0].expires_ms == 1030_000
    clock.t = 1005.0  # the next tick
    store.armed = True
    keeper.renew_all()
    # The state this test is about: the first heartbeat (until 1035) landed after its retry
    # (until 1038), and the lease was renewed in the same tick.
    assert store.held_back is None
    claim_ms = table.workers["w1"][1]
    lease_ms = table.leases[A0].expires_ms
    assert lease_ms > 1030_000  # renewed
    assert lease_ms <= claim_ms, f"lease until {lease_ms} outlives the claim until {claim_ms}"


class ThrottledThenCrossing(MemoryStateStore):
    """A region that throttles the keeper's heartbeats (``throttled``). Once ``armed``, the
    next renewal is slow: while it is out, the round thread's acquire renews the claim
    (``during``); then its connection drops (UnreachableError), but the table still holds
    it and applies it right after the next renewal, the same-tick retry."""

    def __init__(self, table: LeaseTable, clock: ManualClock) -> None:
        super().__init__(table)
        self.clock = clock
        self.throttled = False
        self.armed = False
        self.during: Callable[[], None] = lambda: None
        self.renewed: list[int] = []  # the sent time of each renewal the table applied
        self.held_back: tuple[ShardRef, str, int, int, int] | None = None
        self.sent_at = 0.0

    def heartbeat(self, worker: str, expires_ms: int, *args: Any, **kwargs: Any) -> None:
        if self.throttled and threading.current_thread().name != "round":
            raise ThrottledError("PutItem: ThrottlingException", region="a")
        super().heartbeat(worker, expires_ms, *args, **kwargs)

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        if self.armed:
            self.armed = False
            self.held_back = (shard, owner, now_ms, duration_ms, order)
            self.sent_at = self.clock.now()
            self.clock.t += 1.0
            self.during()
            raise UnreachableError("connection dropped", region="a")
        kept = super().renew(shard, owner, now_ms, duration_ms, order=order)
        self.renewed.append(now_ms)
        if self.held_back is not None:
            (shard, owner, now_ms, duration_ms, order), self.held_back = self.held_back, None
            assert self.clock.now() < self.sent_at + REQUEST_TIMEOUT  # within the assumptions
            super().renew(shard, owner, now_ms, duration_ms, order=order)  # as sent
            self.renewed.append(now_ms)
        return kept


def test_a_renewal_landing_after_its_same_tick_retry_leaves_no_deadline_past_the_table() -> None:
    clock, table, store, keeper = keeper_holding_a0(ThrottledThenCrossing)
    clock.t = 1010.0
    keeper.heartbeat("a")  # the 1010 tick renewed the claim (1040), its lease renewals failed
    store.throttled = True  # from here the region throttles the keeper's heartbeats
    round_thread: list[threading.Thread] = []

    def round_renews_the_claim() -> None:  # the round finds the claim running low
        thread = threading.Thread(target=keeper.acquire, args=("a", A1), name="round")
        thread.start()
        round_thread.append(thread)
        for _ in range(1000):
            if keeper.claims["a"] > 1040.0:
                return
            time.sleep(0.01)  # polls the other thread's progress; no wait for time

    store.during = round_renews_the_claim
    clock.t = 1025.0  # a tick: the heartbeat is throttled, a-0's renewal (to 1040) is slow
    store.armed = True
    keeper.renew_all()
    round_thread[0].join(10)
    # The state this test is about: the retry renewed a-0 after the round moved the claim
    # on (1056), and the first attempt (to 1040) landed after it.
    assert store.held_back is None and store.renewed == [1026_000, 1025_000]
    clock.t = 1035.0
    keeper.renew_all()  # throttled: a-0's lease is not moved (the claim was not)
    # Fencing by time: a write started by the deadline lands by the deadline plus the request
    # timeout, before the table lets another worker take the shard. Else w2 takes a-0 at
    # 1040.01 while w1 still starts writes of it until 1048.5.
    lands_by = keeper.leases[A0].deadline() + REQUEST_TIMEOUT
    expires = table.leases[A0].expires_ms / 1000
    assert lands_by <= expires, f"w1's writes of a-0 land until {lands_by}, it expires at {expires}"


class DroppedRenewals(MemoryStateStore):
    """Once ``armed``: the next renewal's connection drops 0.5 s after it was sent, and the
    table holds it until ``land``; the one after it (the same-tick retry) is throttled."""

    def __init__(self, table: LeaseTable, clock: ManualClock) -> None:
        super().__init__(table)
        self.clock = clock
        self.armed = 0
        self.held_back: tuple[ShardRef, tuple[str, int], int, int] | None = None
        self.sent_at = 0.0

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        if self.armed == 2:
            token = self.held[shard]  # the condition sent: owner, token, order (aws/state.py)
            self.held_back = (shard, token, now_ms + duration_ms, order)
            self.sent_at = self.clock.now()
            self.clock.t += 0.5
            self.armed = 1
            raise UnreachableError("connection dropped", region="a")
        if self.armed == 1:
            self.armed = 0
            raise ThrottledError("UpdateItem: ThrottlingException", region="a")
        return super().renew(shard, owner, now_ms, duration_ms, order=order)

    def land(self) -> None:
        """The held renewal reaches the table: its condition is evaluated there, now."""
        assert self.held_back is not None
        assert self.clock.now() < self.sent_at + REQUEST_TIMEOUT  # within the assumptions
        shard, token, expires_ms, order = self.held_back
        self.held_back = None
        sent = MemoryStateStore(self.table)  # the condition sent: the token held then
        sent.held[shard] = token
        sent.renew(shard, token[0], expires_ms - 30_000, 30_000, order=order)


def test_a_renewal_landing_after_the_release_does_not_move_the_dropped_lease() -> None:
    clock, table, store, keeper = keeper_holding_a0(DroppedRenewals)
    clock.t = 1005.0
    store.armed = 2
    keeper.renew_all()  # the claim is renewed (1035); a-0's renewal is out, its retry failed
    assert store.armed == 0 and keeper.leases[A0].until == 1030.0
    keeper.forget(A0)  # the round drops a-0 (another worker joined), its page over
    keeper.release(A0, "a")
    assert table.leases[A0].expires_ms == 0  # handed back: another worker may take it now
    clock.t = 1006.0
    store.land()  # the renewal sent at 1005 lands, a second after it was sent
    # The state this test is about: the renewal landed after the release.
    assert store.held_back is None
    assert table.leases[A0].expires_ms <= ms(clock.now()), "the released lease runs again"
    other = MemoryStateStore(table)
    assert other.acquire(A0, "w2", ms(clock.now()), 30_000)
