"""The lease keeper after its wall clock stepped forward for a tick and came back (a VM
resumed with a stale-ahead clock, an NTP step undone): it brings its lease down to a lease
from now at its next tick, and its claim at the tick after (a claim is never lowered below
a lease of ours the table may hold); meanwhile it never believes in more lease than the
table holds (its deadline is lowered before a renewal that lowers the expiry is sent). If
it then dies, the shard is free, and its worker id to a process on another machine, one
lease after its last tick, not after the whole step. The real keeper over the in-memory
state table (which orders renewals and heartbeats as aws/state.py does)."""

from __future__ import annotations

import threading

from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")
LEASE = 30.0
STEP = 3600.0


def stored(table: LeaseTable) -> tuple[float, float]:
    """(a-0's lease, w1's claim) as the table holds them, epoch seconds."""
    return table.leases[A0].expires_ms / 1000, table.workers["w1"][1] / 1000


def test_a_clock_stepped_forward_and_back_pins_neither_the_lease_nor_the_claim() -> None:
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table)}
    assert keeper.acquire("a", A0) is not None
    clock.t += STEP  # the wall clock an hour ahead for one tick
    keeper.renew_all()
    assert stored(table) == (1000.0 + STEP + LEASE, 1000.0 + STEP + LEASE)
    clock.t = 1005.0  # back
    seen = []
    for _ in range(2):
        keeper.renew_all()
        lease, claim = stored(table)
        seen.append((lease, claim))
        assert lease <= claim, f"the lease until {lease} outlives the claim until {claim}"
        assert keeper.leases[A0].until <= lease, "a deadline past what the table holds"
        clock.t += 5.0
    # The state this test is about: the lease came down at the first tick back, the claim
    # (kept over the lease until then) at the second.
    assert seen == [(1035.0, 1000.0 + STEP + LEASE), (1040.0, 1040.0)]
    # The keeper dies here. A lease after its last tick, the shard and the id are free.
    clock.t = 1040.001
    assert MemoryStateStore(table).acquire(A0, "w2", ms(clock.t), 30_000)
    restart = LeaseKeeper("w1", "elsewhere", clock, LEASE)  # not provably dead from there
    restart.stores = {"a": MemoryStateStore(table)}
    restart.claim("a", threading.Event())
    assert table.workers["w1"][0] == "elsewhere"


def stepped_and_back(store: MemoryStateStore) -> LeaseKeeper:
    """A keeper through ``store`` that took a-0 at 1000, renewed it (and its claim) under a
    wall clock an hour ahead, and whose clock is back at 1005."""
    clock = store.table.clock
    assert isinstance(clock, ManualClock)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    assert keeper.acquire("a", A0) is not None
    clock.t += STEP
    keeper.renew_all()
    clock.t = 1005.0
    return keeper


class Unanswered(MemoryStateStore):
    """A state table whose renewals (once ``dropping``) lose their connection, the table
    applying each as sent."""

    dropping = False

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        kept = super().renew(shard, owner, now_ms, duration_ms, order=order)
        if self.dropping:
            raise UnreachableError("connection dropped", region="a")
        return kept


def test_a_lowering_renewal_whose_answer_was_lost_leaves_no_deadline_past_the_table() -> None:
    """The keeper lowers its deadline before it sends a renewal that lowers the expiry:
    when the answer is lost (the table applied it), the keeper's lease still ends no later
    than the table's, and the claim is not lowered below the lease until an answer says
    where the lease stands."""
    table = LeaseTable(ManualClock(1000.0))
    store = Unanswered(table)
    keeper = stepped_and_back(store)
    store.dropping = True
    keeper.renew_all()  # the renewal (and its retry) applied, their answers lost
    lease, claim = stored(table)
    # The state this test is about: the table lowered the lease, the keeper heard nothing.
    assert lease == 1035.0
    assert keeper.leases[A0].until <= lease
    keeper.renew_all()
    lease, claim = stored(table)
    assert lease <= claim and keeper.leases[A0].until <= lease


class Refusing(MemoryStateStore):
    """A state table that (once ``refusing``) takes no renewal: each is throttled."""

    refusing = False

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        if self.refusing:
            raise ThrottledError("UpdateItem: ThrottlingException", region="a")
        return super().renew(shard, owner, now_ms, duration_ms, order=order)


def test_a_claim_is_not_lowered_below_a_lease_the_table_still_holds() -> None:
    """Heartbeats answer, renewals do not: the lease stays where the stepped clock put it,
    and so must the claim (else a process restarted under the id on another machine would
    find the claim free while a lease of ours lives)."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    store = Refusing(table)
    keeper = stepped_and_back(store)
    store.refusing = True
    for _ in range(3):
        keeper.renew_all()
        clock.t += 5.0
    lease, claim = stored(table)
    # The state this test is about: the heartbeats were applied, the renewals not.
    assert table.orders["w1"] > 2 and lease == 1000.0 + STEP + LEASE
    assert claim >= lease
    assert keeper.leases[A0].until <= 1035.0  # its writes stop as the clock came back
