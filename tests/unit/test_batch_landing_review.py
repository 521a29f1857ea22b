"""Review of the batch-level wait for writes whose answer was lost (merge 416030f): a lost
write is retried at once and the batch waits, once, until it can no longer land, before
settling (core/writer.py, core/landing.py). These tests attack the argument that a late
first attempt, landing after its retry, is refused by its condition or settled. The real
writer over the in-memory store, with the doubles of test_writes_that_may_still_land."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.conditions import Condition, Const
from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import DeleteVersion, WriteOp
from dynamodb_replicator.core.policy import LATEST
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.testing.memory_store import MemoryStore

from .test_writes import HERE, KEY, TABLE, THERE, delete, protocol, put
from .test_writes_that_may_still_land import (
    AMBIGUOUS,
    LIFETIME,
    REFUSED,
    Faulty,
    _apply,
    _content,
    _writer,
)

KINDS = ["insert", "update", "restore", "delete", "delete_here"]
OPS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 4)), min_size=1, max_size=4)


def _op(kind: str, timestamp: int, seq: str) -> WriteOp:
    """An insert, an update (P1u first), a restore (strict), a delete from elsewhere, or a
    delete in the deleting region (D2 skipped when a read shows nothing to do)."""
    if kind == "insert":
        return put(str(timestamp), seq=seq)
    if kind == "update":
        return dataclasses.replace(put(str(timestamp), seq=seq), replaces=Version.of("0", THERE))
    if kind == "restore":
        return dataclasses.replace(put(str(timestamp), seq=seq), strict=True)
    if kind == "delete":
        return delete(str(timestamp), seq=seq)
    return delete(str(timestamp), deleted_in=HERE, seq=seq)


def _run(
    pages: list[list[tuple[str, int]]],
    faults: dict[int, str],
    lands: dict[int, float],
    takes: float,
    prefetch: bool,
) -> Faulty:
    """Every page applied (a failed one replayed, as the runner does); then time enough for
    anything still out to land."""
    store = Faulty(faults=faults, lands_after=lands, takes=takes)
    w = _writer(store, prefetch=prefetch)
    try:
        for number, page in enumerate(pages):
            ops = [_op(kind, t, str(10 * number + i + 1)) for i, (kind, t) in enumerate(page)]
            for _ in range(8):
                _, result = _apply(w, store, ops)
                if result.failed_sequence is None:
                    break
            else:
                pytest.fail("a page never went through")
    finally:
        w.close()
    store.landings.until(store.landings.now() + 10 * LIFETIME)
    return store


@settings(max_examples=100, deadline=None)
@given(
    pages=st.lists(OPS, min_size=1, max_size=3),
    faults=st.dictionaries(st.integers(0, 10), st.sampled_from([*AMBIGUOUS, *REFUSED])),
    lands=st.dictionaries(st.integers(0, 10), st.floats(0.0, LIFETIME)),
    takes=st.sampled_from([0.0, 1.0]),
    prefetch=st.booleans(),
)
def test_updates_restores_and_deletes_here_whose_answer_was_lost_end_as_without_faults(
    pages: list[list[tuple[str, int]]],
    faults: dict[int, str],
    lands: dict[int, float],
    takes: float,
    prefetch: bool,
) -> None:
    """The property test of test_writes_that_may_still_land, over every kind of write
    (P1u, strict restores, D2 skipped after a read), with and without P0: late first
    attempts landing after their retries leave the key as the same pages leave it without
    faults (compared after every late landing)."""
    store = _run(pages, faults, lands, takes, prefetch)
    clean = _run(pages, {}, {}, 0.0, prefetch)
    assert not store.landings.due  # the state this test is about: everything landed
    assert _content(store.item(TABLE, KEY)) == _content(clean.item(TABLE, KEY))


def _settling(store: Faulty) -> Callable[[], None]:
    """The batch's ``written``: no fault is injected into its settling."""

    def written() -> None:
        store.settling = True

    return written


class _Direct:
    """``store`` without its faults: another writer of the same region (another source
    region's replicator) sharing the table."""

    def __init__(self, store: Faulty) -> None:
        self.store = store

    @property
    def region(self) -> str:
        return self.store.region

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        return MemoryStore.put(self.store, table, item, condition)

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        return MemoryStore.delete(self.store, table, key, condition)

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        return MemoryStore.get(self.store, table, keys)


@pytest.mark.parametrize("deleted_at", [1.0, 3.5])
def test_a_late_put_landing_after_another_writers_delete_is_settled_by_its_batch(
    deleted_at: float,
) -> None:
    """Put 5 loses its answer (it lands 4 s after its send) and is retried at once; another
    writer of the region applies delete 6 (D1, D2) before the late landing. The late
    attempt finds the key absent and lands; the batch's settling, after its wait, reads
    delete 6's tombstone and removes it."""
    store = Faulty(faults={0: "dropped"}, lands_after={0: 4.0})
    other = dataclasses.replace(protocol(store), store=_Direct(store))
    landed: list[bool] = []

    def written() -> None:  # after the batch's wait, before its settling
        store.settling = True
        landed.append(store.item(TABLE, KEY) is not None)

    began = store.landings.now()
    store.landings.later(began + deleted_at, lambda: other.delete(TABLE, delete("6")))
    w = _writer(store)
    try:
        result = w.apply(TABLE, [put("5")], written=written)
    finally:
        w.close()
    # The state this test is about: the late first attempt resurrected the key for a while.
    assert landed == [True]
    assert result.failed_sequence is None
    assert store.item(TABLE, KEY) is None


def test_a_late_put_on_a_key_whose_delete_the_deadline_cut_after_its_tombstone_is_settled() -> None:
    """Put 5 loses its answer (it lands 4.5 s after its send; each request takes a second)
    and is retried at once; delete 6 of the same batch writes its tombstone (D1), then the
    deadline refuses its D2. The batch waits for the late landing, and settling removes
    put 5 (the tombstone remembers 6) although D2 never ran; the replay finishes the
    delete."""
    store = Faulty(faults={0: "dropped"}, lands_after={0: 4.5}, takes=1.0)
    began = store.landings.now()
    w = _writer(store)
    ops: list[WriteOp] = [put("5", seq="1"), delete("6", seq="2")]
    try:
        first = w.apply(TABLE, ops, deadline=began + 2.5, written=_settling(store))
        cut = [call for _, call in store.starts]
        present, out = store.item(TABLE, KEY), len(store.landings.due)
        _, replay = _apply(w, store, ops)
    finally:
        w.close()
    # The state this test is about: put, its retry, D1; no D2 (the deadline), and the
    # failure names the delete.
    assert cut[:3] == ["put", "put", "put"] and "delete" not in cut[:4]
    assert first.failed_sequence == "2"
    assert out == 0, "the batch returned before its late put 5 landed"
    assert present is None, "settling left the late put 5 over delete 6's tombstone"
    assert replay.failed_sequence is None
    assert store.item(TABLE, KEY) is None
    assert store.landings.now() >= began + LIFETIME


def test_a_late_put_landing_after_the_applications_delete_here_is_removed_by_that_delete() -> None:
    """Put 5 (from another region) loses its answer and is retried at once; this region's
    application deletes the item (no tombstone yet: its stream record is not replicated
    yet); the late first attempt lands on the absent key. Settling finds no tombstone and
    leaves it; the application's REMOVE, replicated here (a delete of (5, origin, LATEST)
    in the deleting region), reads the item after D1 and removes it (D2 is skipped only
    when the item is absent or newer)."""
    store = Faulty(faults={0: "dropped"}, lands_after={0: 4.0})
    began = store.landings.now()
    deleted: list[bool] = []

    def application_delete() -> None:
        deleted.append(MemoryStore.delete(store, TABLE, KEY, Const(True)).applied)

    store.landings.later(began + 2.0, application_delete)
    w = _writer(store)
    try:
        _, result = _apply(w, store, [put("5")])
        resurrected = store.item(TABLE, KEY)
        removal = DeleteVersion(KEY, Version.of("5", THERE, LATEST), HERE, "3")
        _, replicated = _apply(w, store, [removal])
    finally:
        w.close()
    # The state this test is about: the late first attempt landed after the application's
    # delete, and its batch's settling left it (no tombstone to read yet).
    assert deleted == [True] and result.failed_sequence is None
    assert resurrected is not None
    assert replicated.failed_sequence is None
    assert store.item(TABLE, KEY) is None
