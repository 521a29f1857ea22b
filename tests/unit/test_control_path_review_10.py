"""Review 10 of the control path (tests only): what the earlier reviews did not try.

Held (no defect reproduced): the Lambda handler returns only once a write whose answer was
lost just before the deadline can no longer land, and names the batch for a retry; a
page's ``Handover`` abandoned while one region's batch runs waits for it, and a region's
batch queued behind it never starts, whichever region a reload added to the writers since;
a renewal answered before its lease was dropped (and released, and taken again) but used
after moves nothing of the new lease, and one used after the lease was left to expire
keeps the release back (``passes``, set when it was sent) until the renewed expiry has
passed, while the left thread's fence stays where it was when dropped.
The control-plane simulations ran on fresh seeds (900000+) without a violation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.awslambda.handler import process_event
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.fanout import AbandonedBatchError, Handover
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.holdings import Lease
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.regions import Coordination
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

DATA = Path(__file__).parent.parent / "data"
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-1")
SUFFIX = ".__tombstones"
LEASE = 30.0
SHARD = ShardRef("T", "arn:a/stream/T", "s-0")
LIFETIME = 0.4  # how long a write whose answer was lost may still land after its start


def _writer(store: MemoryStore) -> StoreWriter:
    protocol = WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, SystemClock(), SUFFIX, 60)
    options = WriterOptions(max_in_flight=4, backoff=Backoff(attempts=1), request_lifetime=LIFETIME)
    return StoreWriter(protocol, options)


def test_the_handler_returns_only_once_a_write_whose_answer_was_lost_can_no_longer_land() -> None:
    sent: list[float] = []
    lossy = MemoryStore("ap-southeast-1", ("id",))

    def lose_the_answer(_store: MemoryStore, call: str) -> None:
        if call.startswith("put") and not sent:
            sent.append(time.monotonic())
            raise UnreachableError("read timeout", region=lossy.name, request_sent=True)

    lossy.before_call = lose_the_answer
    stores = {name: MemoryStore(name, ("id",)) for name in REGIONS[:2]} | {lossy.name: lossy}
    writers = {name: _writer(store) for name, store in stores.items()}
    replicator = Replicator(
        source=REGIONS[0],
        writers=writers,
        tombstones=TombstoneTable(stores[REGIONS[0]], FIELDS, SUFFIX),
        policy=LastWriterWins(FIELDS),
        fields=FIELDS,
    )
    event: dict[str, Any] = json.loads((DATA / "golden_event.json").read_text())
    try:
        response = process_event(
            event, replicator, deadline=SystemClock().now() + 5.0, request_timeout=LIFETIME
        )
        returned = time.monotonic()
    finally:
        for writer in writers.values():
            writer.close()
    assert sent, "no put's answer was lost"
    assert returned >= sent[0] + LIFETIME, "returned while the lost write could still land"
    assert response["batchItemFailures"], "the batch with a lost write was not named for a retry"


@pytest.mark.parametrize("added", [False, True])
def test_an_abandoned_handover_waits_for_a_running_batch_and_starts_no_queued_one(
    added: bool,
) -> None:
    handover = Handover()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def batch(region: str) -> str:
        ran.append(region)
        if region == "eu-west-1":
            started.set()
            release.wait(5)
            ran.append("eu-west-1 ended")
        return region

    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread: the second one queues
        first = pool.submit(handover.wrap(lambda: batch("eu-west-1")))
        assert started.wait(5)
        second = pool.submit(handover.wrap(lambda: batch("us-east-1")))
        # ``added``: a reload put a region in meanwhile, its batch queued behind too.
        third = pool.submit(handover.wrap(lambda: batch("ap-southeast-1"))) if added else None
        abandoning = threading.Thread(target=handover.abandon)
        abandoning.start()
        abandoning.join(0.2)
        assert abandoning.is_alive(), "abandon returned while a batch still ran"
        release.set()
        abandoning.join(5)
        assert not abandoning.is_alive()
        assert ran == ["eu-west-1", "eu-west-1 ended"], (
            "abandon returned before the running batch ended"
        )
        assert first.result() == "eu-west-1"
        for queued in (second, third):
            if queued is not None:
                with pytest.raises(AbandonedBatchError):
                    queued.result(5)
    assert ran == ["eu-west-1", "eu-west-1 ended"], "a queued batch started after the abandon"


class _LateAnswerKeeper(LeaseKeeper):
    """A keeper whose renewal's answer is taken in (``_renew_region``) only after
    ``meanwhile`` ran: the region lock is free by then, so a drop, a release and a new
    acquire of the same shard may all come between the table's answer and its use."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[tuple[bool, float, float, float]] = []

    def _renew_one(
        self, region: str, store: Coordination, ref: ShardRef, lease: Lease
    ) -> tuple[bool, float, float, float] | None:
        renewed = super()._renew_one(region, store, ref, lease)
        if renewed is not None:
            self.answers.append(renewed)
            meanwhile, self.meanwhile = self.meanwhile, lambda: None
            meanwhile()
        return renewed


def test_a_renewal_answered_before_a_drop_and_reacquire_moves_no_fence_of_the_new_lease() -> None:
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    keeper = _LateAnswerKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table, name="w1")}
    keeper.claim("a", threading.Event())
    first = keeper.acquire("a", SHARD)
    assert first is not None
    clock.t += LEASE / 3
    keeper.renew_all()  # the claim moves on, so that the next renewal moves the lease
    clock.t += LEASE / 3
    taken: list[Lease] = []
    answered: list[tuple[float, float, float]] = []
    before = first.until

    def drop_release_and_take_again() -> None:
        keeper.forget(SHARD)
        keeper.ended(SHARD, first)  # its thread ended: due for release
        keeper.settle_now({"a"})  # the stopping path's release, off the keeper's tick
        clock.t += 1.0
        again = keeper.acquire("a", SHARD)
        assert again is not None, "the released shard was not taken again"
        taken.append(again)
        answered.append((again.until, again.held_until, again.ceiling))

    keeper.meanwhile = drop_release_and_take_again
    keeper.renew_all()  # the renewal of ``first`` is answered, then used after the above
    assert taken, "the drop and re-acquire did not come between the answer and its use"
    second = taken[0]
    assert keeper.leases[SHARD] is second
    # The new lease's fence is what its own acquire was answered, nothing the old
    # renewal's answer stored into ``first`` after it was dropped.
    kept, until, _sent, _steady = keeper.answers[-1]
    assert kept and until > before, "the old renewal was not answered as kept"
    # The dropped lease's fence stays where it was (Held.stop: a page is cut at the fence
    # it had when the stop began); its release set it to 0.
    assert first.until <= before
    assert (second.until, second.held_until, second.ceiling) == answered[0]
    now = clock.now()
    assert second.fence(clock, now) == second.until - second.margin


def test_a_left_lease_whose_renewal_answer_comes_late_is_not_released_under_its_thread() -> None:
    """The renewal's answer is used after the lease was dropped and left to expire (its
    thread still in a request) and the stopping path tried to release it: the release
    waits, since the renewal sent may have stored a later expiry (``passes``), so the
    left thread's fence, moved on by that answer, never outlives the table's lease."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    keeper = _LateAnswerKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": MemoryStateStore(table, name="w1")}
    keeper.claim("a", threading.Event())
    first = keeper.acquire("a", SHARD)
    assert first is not None
    clock.t += LEASE / 3
    keeper.renew_all()
    clock.t += LEASE / 3
    other = LeaseKeeper("w2", "p", clock, LEASE)
    other.stores = {"a": MemoryStateStore(table, name="w2")}
    other.claim("a", threading.Event())
    tried: list[object] = []

    def drop_leave_and_try_to_release() -> None:
        clock.t += LEASE / 2  # the answer came late: past the fence the lease had before
        assert first.fence(clock, clock.now()) < clock.now()
        keeper.forget(SHARD)
        keeper.leave(SHARD, first)  # its thread is still in a request
        keeper.settle_now({"a"})
        tried.append(other.acquire("a", SHARD))

    keeper.meanwhile = drop_leave_and_try_to_release
    keeper.renew_all()
    assert tried, "the drop did not come between the renewal's answer and its use"
    assert tried[0] is None, "another worker took the shard while its left thread may write"
    kept, until, _sent, _steady = keeper.answers[-1]
    assert kept, "the late renewal was not answered as kept"
    # The answer used after the drop moves no fence of the left thread: it writes no
    # further than the fence it had when dropped (already past).
    assert first.fence(clock, clock.now()) < clock.now(), "the late answer moved the fence"
    # The table holds the renewed lease: the shard is not taken before it has passed, and
    # is taken (released by the keeper's ticks, or run out) soon after: nothing pins it.
    taken = None
    while taken is None and clock.now() < until + LEASE:
        if clock.now() < until:
            assert other.acquire("a", SHARD) is None, "taken before the renewed lease passed"
        clock.t += 1.0
        keeper.renew_all()
        other.renew_all()
        taken = other.acquire("a", SHARD) if clock.now() >= until else None
    assert taken is not None, "the left lease pinned its shard past its renewed expiry"
