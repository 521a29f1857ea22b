"""Adversarial interleavings against the transaction-free write protocol (core/writes.py,
core/writer.py). Each test drives the real protocol on in-memory stores and lets another
writer (another replicator process: another source region's worker, or a zombie) slip in
between two store calls through the MemoryStore hooks. Each test states the interleaving.

Each failed against the first version of the protocol (found by an adversarial review): a
region that ended diverged (a delete undone) or an accounting that was wrong.
"""

from __future__ import annotations

import threading

from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from . import adversaries
from .adversaries import HERE, KEY, TABLE, A, B, X, delete, held, put, v
from .strategies import FIELDS


def protocol(store: MemoryStore) -> WriteProtocol:
    """Without P0 (the tombstone read before writing), so late puts land: settling alone
    must keep every delete."""
    return adversaries.protocol(store, prefetch=False)


def writer(
    store: MemoryStore, *, attempts: int = 8, stop: threading.Event | None = None
) -> StoreWriter:
    return adversaries.writer(store, attempts=attempts, stop=stop, prefetch=False)


def another_process(store: MemoryStore) -> StoreWriter:
    """A second replicator writing into the same region's tables (no hooks on its calls)."""
    return adversaries.another_process(store, prefetch=False)


def test_a_delete_later_in_the_chain_must_not_drop_the_settle_of_a_creation() -> None:
    """``supersedes`` drops a pending settle when a later delete of the chain "covers" it,
    assuming its D2 removed the put or found a newer *legitimate* item. But the newer item
    D2 found may be a concurrent put that replaced the creation, and that put relied on
    the creation's settle (the docstring's "any chain of replacements starts with a
    creation").

    1. X deleted 3@B: HERE remembers it (tombstone 3@B) and holds nothing.
    2. A's batch into HERE: [put 1@A (an update in A: no P0), delete 1@A (A deleted it)].
       P1 of 1@A creates the item: unsettled.
    3. Delete 1@A: D1 (fails, a newer delete is remembered; ignored).
    4. Between D1 and D2, B's lagging replicator puts 3@B (an update in B: no P0). Its P1
       replaces 1@A (older), so it replaced something that was not itself: settled.
    5. D2 of 1@A: the stored 3@B is newer: STALE. ``supersedes(delete 1@A, put 1@A)`` drops
       the pending settle of 1@A. No settling read is made.
    The batch succeeds (checkpoint moves on) and HERE holds 3@B although 3@B was deleted.
    """
    store = MemoryStore(HERE)
    other = another_process(store)
    other.apply(TABLE, [delete(v("3", B), X, "90")])
    sneaked: list[str] = []

    def b_put_before_d2(_s: MemoryStore, call: str) -> None:
        if call == f"delete {TABLE}" and not sneaked:
            sneaked.append(call)
            assert other.apply(TABLE, [put(v("3", B), "91")]).failed_sequence is None

    store.before_call = b_put_before_d2
    w = writer(store)
    result = w.apply(TABLE, [put(v("1", A), "1"), delete(v("1", A), A, "2")])
    w.close()
    other.close()
    assert sneaked and result.failed_sequence is None
    assert held(store) is None, f"3@B was deleted but HERE holds {held(store)}"


def test_a_lost_answer_retry_that_finds_a_newer_put_must_still_settle() -> None:
    """The docstring: "A P1 applied but never acknowledged is retried: the retry finds V
    itself". Not if another writer replaced V in between.

    1. X deleted 3@B: HERE remembers it and holds nothing.
    2. A's put 1@A (an update in A: no P0): P1 creates the item; the answer is lost.
    3. Before the retry, B's replicator puts 2@B (an update in B: no P0): its P1 replaces
       1@A (not itself, not absent): settled, relying on 1@A's settle.
    4. The retry of 1@A fails its condition (2@B is newer): STALE, not unsettled. Nobody
       ever settles; the batch reports success.
    HERE holds 2@B although a delete of 3@B (>= 2@B) happened.
    """
    store = MemoryStore(HERE)
    other = another_process(store)
    other.apply(TABLE, [delete(v("3", B), X, "90")])
    puts: list[str] = []

    def lose_first_answer(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and len(puts) == 0:
            puts.append(call)
            raise UnreachableError("answer lost")

    def b_put_before_retry(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and len(puts) == 1:
            puts.append(call)
            assert other.apply(TABLE, [put(v("2", B), "91")]).failed_sequence is None

    store.after_apply = lose_first_answer
    store.before_call = b_put_before_retry
    w = writer(store)
    result = w.apply(TABLE, [put(v("1", A), "1")])
    w.close()
    other.close()
    assert len(puts) == 2 and result.failed_sequence is None
    assert held(store) is None, f"a delete of 3@B happened but HERE holds {held(store)}"


def test_a_put_given_up_and_replayed_after_a_newer_put_must_still_settle() -> None:
    """The same hole across a crash/restart: the checkpoint stays before the put (good),
    but the replay does not find "V itself" any more.

    1. X deleted 3@B in HERE.
    2. A's put 1@A: P1 creates the item, then every answer is lost (or the process dies):
       the batch reports 1@A failed; the checkpoint stays before it.
    3. B's replicator puts 2@B: replaces 1@A -> settled (relies on 1@A's settle).
    4. A's worker replays the batch: P1 of 1@A is STALE (2@B newer): not settled. Success.
    """
    store = MemoryStore(HERE)
    other = another_process(store)
    other.apply(TABLE, [delete(v("3", B), X, "90")])

    def every_answer_lost(_s: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}":
            raise UnreachableError("answer lost")

    store.after_apply = every_answer_lost
    w = writer(store, attempts=2)
    first = w.apply(TABLE, [put(v("1", A), "1")])
    assert first.failed_sequence == "1"
    store.after_apply = lambda _s, _c: None
    assert other.apply(TABLE, [put(v("2", B), "91")]).failed_sequence is None
    replay = w.apply(TABLE, [put(v("1", A), "1")])
    w.close()
    other.close()
    assert replay.failed_sequence is None
    assert held(store) is None, f"a delete of 3@B happened but HERE holds {held(store)}"


def test_a_lost_answer_on_a_take_back_still_counts_the_put_as_taken_back() -> None:
    """Accounting: P3 removes the put but its answer is lost; the retry of the whole settle
    finds nothing to delete (``attribute_exists`` fails), so the put stays counted as
    applied, with no conflict recorded, although it was taken back."""
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [delete(v("5", B), B, "1")])
    lost: list[str] = []

    def lose_take_back(_s: MemoryStore, call: str) -> None:
        if call == f"delete {TABLE}" and not lost:
            lost.append(call)
            raise UnreachableError("answer lost")

    store.after_apply = lose_take_back
    result = w.apply(TABLE, [put(v("4", A), "2")])
    w.close()
    assert lost and store.item(TABLE, KEY) is None
    assert (result.applied, result.stale, len(result.conflicts)) == (0, 1, 1)


def test_a_late_put_to_the_deleting_region_is_stale_without_a_write() -> None:
    """With P0 (production), a late put after a delete the region already remembers makes
    no write, so no take-back appears in that region's stream to be sent out again."""
    store = MemoryStore(HERE)
    w = StoreWriter(
        WriteProtocol(
            store, LastWriterWins(FIELDS), FIELDS, ManualClock(100.0), ".__tombstones", 3600
        ),
        WriterOptions(backoff=Backoff(base=0.0)),
    )
    w.apply(TABLE, [delete(v("5", HERE), HERE, "1")])
    store.calls.clear()
    result = w.apply(TABLE, [put(v("4", A), "2")])
    w.close()
    assert (result.applied, result.stale) == (0, 1)
    assert all(call.startswith("get") for call in store.calls), store.calls
