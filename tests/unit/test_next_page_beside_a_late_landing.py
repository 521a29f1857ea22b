"""Review of ``WriterOptions.written_before_wait`` (the runner's writers): a page's writes
count as done before a write of it whose answer was lost has been waited out, so the next
page's writes run while that first attempt may still land; the page's settling (and so its
checkpoint, a hand-over, the Lambda's return) still wait for it (core/writer.py,
core/landing.py). The real writer over the in-memory store, with scripted lost answers
that land late (``Faulty``: review 4's ``Landings`` over a ManualClock)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.conditions import TRUE
from dynamodb_replicator.core.model import Item, Version
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from . import test_control_path_review_4 as review_4
from .test_writes import HERE, KEY, TABLE, THERE, delete, put
from .test_writes_that_may_still_land import AMBIGUOUS, LIFETIME, REFUSED, Faulty, _writer

KINDS = ("put", "update", "restore", "delete", "delete_here")


def _op(kind: str, timestamp: int, seq: str) -> WriteOp:
    """One write of ``KEY``; a version (timestamp, THERE) has one content whatever its kind."""
    t = str(timestamp)
    if kind == "put":
        return put(t, seq=seq)
    if kind == "update":  # P1u first (the item is expected present)
        return dataclasses.replace(put(t, seq=seq), replaces=Version.of("0", THERE))
    if kind == "restore":  # strict: not over its own version
        return dataclasses.replace(put(t, seq=seq), strict=True)
    if kind == "delete":
        return delete(t, seq=seq)
    return delete(t, deleted_in=HERE, seq=seq)  # D2 skipped when a read shows nothing to do


def _pages(spec: list[list[tuple[str, int]]]) -> list[list[WriteOp]]:
    return [
        [_op(kind, t, str(100 * n + i + 1)) for i, (kind, t) in enumerate(page)]
        for n, page in enumerate(spec)
    ]


def _content(item: Item | None) -> Item | None:
    return None if item is None else {k: v for k, v in item.items() if k != "__replicaNonce"}


def _failed(result: TargetResult | None) -> bool:
    return result is not None and result.failed_sequence is not None


def _pipeline(
    w: StoreWriter, store: Faulty, pages: list[list[WriteOp]], checked: Callable[[int], None]
) -> None:
    """The runner's pipeline for one target: page i+1's writes start on page i's
    ``written`` (here they run whole inside it: their settling too, before page i's wait),
    page i+2 only once page i settled. A failed page is replayed with the one after it,
    from the checkpoint. ``checked(j)`` after pages 0..j went through (a checkpoint at j)."""
    first, attempts = 0, 0
    while first < len(pages):
        attempts += 1
        assert attempts < 40, "the pages never went through"
        follower: list[TargetResult] = []

        def written(at: int = first, follower: list[TargetResult] = follower) -> None:
            if at + 1 < len(pages) and not follower:
                follower.append(w.apply(TABLE, pages[at + 1]))

        result = w.apply(TABLE, pages[first], written=written)
        if _failed(result):
            continue  # replay from ``first`` (the follower's writes are harmless again)
        if follower and not _failed(follower[0]):
            checked(first + 1)  # both went through: the key holds what both leave
            first += 2
        else:
            if not follower:
                checked(first)
            first += 1  # a failed follower left the key mid-page: replayed next


PAGE = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 4)), min_size=1, max_size=3)


@settings(max_examples=250, deadline=None)
@given(
    spec=st.lists(PAGE, min_size=2, max_size=4),
    faults=st.dictionaries(
        st.integers(0, 10), st.sampled_from([*AMBIGUOUS, *AMBIGUOUS, *REFUSED]), min_size=1
    ),
    lands=st.dictionaries(st.integers(0, 10), st.floats(0.0, LIFETIME)),
    takes=st.sampled_from([0.0, 1.0]),
    prefetch=st.booleans(),
)
def test_a_late_landing_beside_the_next_pages_writes_never_outlives_its_pages_checkpoint(
    spec: list[list[tuple[str, int]]],
    faults: dict[int, str],
    lands: dict[int, float],
    takes: float,
    prefetch: bool,
) -> None:
    """Pages of puts, updates (P1u), restores (strict), deletes and deletes in the deleting
    region (D2 skipped on a read) of one key, any write (settling's P3 too) losing its answer
    and landing later, within its lifetime, or refused. The next page runs beside the lost
    answer's wait. Whenever pages 0..j went through (their checkpoint may be saved), the key
    holds exactly what those pages leave without faults, and at the end no late landing is
    still due: none lands after its page's checkpoint, none is resurrected or lost."""
    pages = _pages(spec)
    clean = Faulty()
    plain = _writer(clean, prefetch=prefetch)
    expected: list[Item | None] = []
    try:
        for ops in pages:
            result = plain.apply(TABLE, ops)
            assert not _failed(result)
            expected.append(_content(clean.item(TABLE, KEY)))
    finally:
        plain.close()

    store = Faulty(faults=faults, lands_after=lands, takes=takes)
    w = _writer(store, prefetch=prefetch, early=True)
    seen: list[int] = []

    def checked(j: int) -> None:
        seen.append(j)
        assert _content(store.item(TABLE, KEY)) == expected[j], f"after page {j}"

    try:
        _pipeline(w, store, pages, checked)
    finally:
        w.close()
    assert seen[-1] == len(pages) - 1  # the state this test is about: every page went through
    pending = [when for when, _ in store.landings.due]
    # A settling delete (P3) is not waited out by design: it may still be due, and removes
    # only what a remembered delete covers. Let it land: the state must not change.
    store.landings.until(store.landings.now() + 2 * LIFETIME)
    assert _content(store.item(TABLE, KEY)) == expected[-1], f"late landings due: {pending}"


def test_a_late_put_of_page_one_on_a_key_page_two_deleted_is_removed_before_page_ones_end() -> None:
    """Page 1's insert loses its answer (its retry applies); page 2 deletes the key and
    settles before the lost put lands; the lost put then lands on the deleted key. Page 1
    returns (its checkpoint may be saved) only after its settling removed it."""
    store = Faulty(faults={0: "dropped"}, lands_after={0: 1.0})
    w = _writer(store, early=True)
    second: list[TargetResult] = []
    try:

        def written() -> None:
            second.append(w.apply(TABLE, [delete("5", seq="2")]))
            # the state this test is about: page 2 is done, page 1's lost put is still out
            assert store.item(TABLE, KEY) is None and store.landings.due

        result = w.apply(TABLE, [put("4", seq="1")], written=written)
    finally:
        w.close()
    assert not _failed(result) and not _failed(second[0])
    assert not store.landings.due
    assert store.item(TABLE, KEY) is None


def test_a_late_put_does_not_replace_the_next_pages_newer_put() -> None:
    """Page 1's update (P1u) of version 4 loses its answer; page 2 puts version 5 and
    settles; the late version 4 meets version 5 and is refused."""
    store = Faulty(faults={0: "dropped"}, lands_after={0: 2.0})
    w = _writer(store, prefetch=True, early=True)
    MemoryStore.put(store, TABLE, {**put("3").image}, TRUE)  # the item an update expects
    try:
        update = dataclasses.replace(put("4", seq="1"), replaces=Version.of("3", THERE))

        def written() -> None:
            assert not _failed(w.apply(TABLE, [put("5", seq="2")]))
            assert store.landings.due  # the state this test is about

        result = w.apply(TABLE, [update], written=written)
    finally:
        w.close()
    assert not _failed(result) and not store.landings.due
    item = store.item(TABLE, KEY)
    assert item is not None and item["__timestamp"] == {"N": "5"}


def _early_memory_replicator(
    source: str, stores: Mapping[str, MemoryStore], clock: review_4.Landings
) -> Replicator:
    """``review_4.memory_replicator`` with the runner's writers (``written_before_wait``)."""
    replicator = review_4_memory_replicator(source, stores, clock)
    for w in replicator.writers.values():
        assert isinstance(w, StoreWriter)
        w.options = dataclasses.replace(w.options, written_before_wait=True)
    return replicator


review_4_memory_replicator = review_4.memory_replicator


def test_a_hand_over_with_the_runners_writers_still_waits_out_a_lost_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review 4's hand-over interleaving (a dropped put of the shard's page, the shard
    handed over, another worker acquires it, then the put would land) with the runner's
    writers, which say ``written`` before the wait: the page's end, hence the hand-over,
    still comes after the put's last chance to land."""
    monkeypatch.setattr(review_4, "memory_replicator", _early_memory_replicator)
    review_4.test_a_dropped_write_does_not_land_after_the_released_shard_was_taken()


def test_a_written_callback_that_raises_does_not_skip_the_wait_for_a_lost_answer() -> None:
    store = Faulty(faults={0: "dropped"})
    w = _writer(store, early=True)

    def written() -> None:
        raise RuntimeError("the caller's callback failed")

    try:
        with pytest.raises(RuntimeError):
            w.apply(TABLE, [put("4", seq="1")], written=written)
        ended = store.landings.now()
    finally:
        w.close()
    _, sent = store.ambiguous[0]  # the state this test is about: the put's answer was lost
    assert ended >= sent + LIFETIME, "apply ended while its lost put could still land"


def test_through_the_replicator_a_lost_put_landing_beside_the_next_pages_delete_is_removed() -> (
    None
):
    """The real Replicator of region a with the runner's writers, the next page started on
    the page's ``written`` (its gate over regions a, b, c): page 1's insert reaches b with
    its answer lost (it lands a second after its send), page 2's delete of the key runs
    whole before that, then the put lands on the deleted key. Page 1's settling in b comes
    after it and removes it: every region ends without the key."""
    clock = ManualClock(1000.0)
    landings = review_4.Landings(clock)
    b = review_4.FirstPutHeldBack("b", landings, table="Orders")
    stores: dict[str, MemoryStore] = {"a": MemoryStore("a"), "b": b, "c": MemoryStore("c")}
    replicator = _early_memory_replicator("a", stores, landings)
    insert = review_4.insert_record(5)
    remove = {
        **insert,
        "eventName": "REMOVE",
        "dynamodb": {
            "Keys": {"pk": {"S": "k"}},
            "OldImage": insert["dynamodb"]["NewImage"],
            "SequenceNumber": f"{6:021d}",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    second: list[BatchResult] = []
    pending: list[bool] = []
    page_2_ended = threading.Event()
    land = b.land

    def land_after_page_2() -> None:
        # Region b's writer waits its lost put out as soon as it said written, maybe
        # before region c did and page 2 started: the put lands only once page 2 ended.
        assert page_2_ended.wait(10), "page 2 never ended"
        land()

    b.land = land_after_page_2  # type: ignore[method-assign]

    def written() -> None:
        second.append(replicator.process("Orders", [remove], from_json=False))
        pending.append(b.held_back is not None)
        page_2_ended.set()

    try:
        first = replicator.process("Orders", [insert], from_json=False, written=written)
    finally:
        replicator.close()
    # The state this test is about: page 2 ended while page 1's put to b was still out.
    assert b.dropped and pending == [True]
    assert first.failed_sequence() is None and second[0].failed_sequence() is None
    assert b.held_back is None  # it landed before page 1 returned
    for name, store in stores.items():
        assert store.item("Orders", KEY) is None, name
