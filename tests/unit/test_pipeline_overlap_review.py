"""Adversarial review of pages in flight (three when it was written, ``PAGES_IN_FLIGHT``
now): a page's reads overlap the writes of the page before it, its writes wait in
``ready`` (now only when it shares a key with a page before it still writing). Its one
finding (a page waiting in ``ready`` held a thread of the replicator's shared pool: a full
pool deadlocked) is fixed and pinned first; the attacks that held stay as passing tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import ItemKey, SystemAttributes
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.streams import Page, ShardRef
from dynamodb_replicator.runner.pipeline import StoppedPageError
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .fakes import FixedTombstones, RecordingWriter
from .strategies import FIELDS
from .stream_regions import EU, TABLE, US, StreamRegions, T, n, s
from .test_pipeline import WAIT, Journal, first, saved
from .test_pipeline_overlapping_reads import keyed, not_within, worker
from .test_shardworker import FakeCheckpoints, FakeStream

# -- the finding, fixed --------------------------------------------------------------------


def test_a_batch_waiting_for_the_page_before_never_holds_back_that_pages_batch() -> None:
    """One replicator (one pool) serves every shard of a source region and every table.
    A pool of one thread stands for a pool whose every thread is busy. Page B (read
    ahead, no key of A, no tombstone lookup) gets to ``ready`` before page A (still in its
    source tombstone read) hands its batch over: B waits for A's writes, and A's batch
    must find a thread meanwhile (B waits in its own thread, not the pool's). The wait
    gives up after 3 s (StoppedPageError) so that a deadlock ends the test."""
    fields = SystemAttributes()
    replicator = Replicator(
        source="eu-west-1",
        writers={r: RecordingWriter(r) for r in ("eu-west-1", "us-east-1")},
        tombstones=FixedTombstones(),
        policy=LastWriterWins(fields),
        fields=fields,
    )
    replicator._pool.shutdown()
    replicator._pool = ThreadPoolExecutor(max_workers=1)  # every other thread busy
    one = ["us-east-1"]  # one target region: one batch a page
    a_written, b_waiting = threading.Event(), threading.Event()
    gave_up: list[bool] = []

    def ready_b() -> None:  # Flight._ready of B: A's writes first
        b_waiting.set()
        if not a_written.wait(3.0):
            gave_up.append(True)
            raise StoppedPageError("stand-in: the wait for page A gave up")

    def page_b() -> None:
        with contextlib.suppress(StoppedPageError):
            replicator.process("T", [], from_json=True, regions=one, ready=ready_b)

    def page_a() -> None:
        replicator.process("T", [], from_json=True, regions=one, written=a_written.set)

    b = threading.Thread(target=page_b, daemon=True)
    b.start()
    assert b_waiting.wait(WAIT)
    a = threading.Thread(target=page_a, daemon=True)
    a.start()
    a.join(WAIT)
    b.join(WAIT)
    replicator.close()
    assert not a.is_alive() and not b.is_alive()
    assert gave_up == []  # A's batch found a thread while B's waited for it


# -- attacks that held ----------------------------------------------------------------------


def test_a_page_sharing_a_key_with_the_page_two_before_it_waits_with_its_reads() -> None:
    """Page 7 shares key ``a`` with page 1 (still writing), not with page 4 between them:
    its reads must wait for page 1's writes, not only for those of the page before."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c")]
    records += [keyed(4, "d"), keyed(5, "e"), keyed(6, "f")]
    records += [keyed(7, "a"), keyed(8, "g"), keyed(9, "h")]
    stream = FakeStream({"s1": records})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("start 4")  # page 4 (other keys) reads early
    assert not_within(journal, "start 7")  # page 7 would read a before page 1 wrote it
    go.set()
    stepping.join(WAIT)
    journal.wait_for("start 7")
    assert journal.events.index("written 1") < journal.events.index("start 7")
    for _ in range(3):
        w.step()
    assert saved(checkpoints) == {f"{9:021d}"}
    assert [e for e in journal.events if e.startswith("start")] == ["start 1", "start 4", "start 7"]


class FailingOnce(FakeStream):
    """A FakeStream whose ``fail_read``-th read fails (an unreachable stream)."""

    def __init__(self, shards: dict[str, list[dict[str, Any]]], fail_read: int) -> None:
        super().__init__(shards)
        self.count = 0
        self.fail_read = fail_read

    def read(self, iterator: str, limit: int = 1000) -> Page:
        self.count += 1
        if self.count == self.fail_read:
            raise UnreachableError("stream down")
        return super().read(iterator, limit)


def test_a_failed_read_behind_two_pages_in_flight_resumes_after_the_last_of_them() -> None:
    """Reads: page 1, page 4 (ahead), then the read after page 4 fails. The next read
    must start right after page 4's last record: none skipped, none applied twice, the
    checkpoint never past a page not settled."""
    stream = FailingOnce({"s1": [keyed(i, f"k{i}") for i in range(1, 10)]}, fail_read=3)
    checkpoints = FakeCheckpoints()
    journal = Journal()
    w = worker(journal, stream, checkpoints)
    w.step()
    assert saved(checkpoints) == {f"{3:021d}"}
    (cursor,) = w.cursors
    assert [first(f.records) for f in cursor.inflight] == [4] and cursor.iterator is None
    for _ in range(3):
        w.step()
    assert ("s1", f"{6:021d}") in stream.iterators_taken
    assert saved(checkpoints) == {f"{9:021d}"}
    assert [e for e in journal.events if e.startswith("start")] == ["start 1", "start 4", "start 7"]


def test_a_stop_starts_neither_the_reads_nor_the_writes_of_a_page_waiting_on_a_shared_key() -> None:
    """Page 4 shares key ``a`` with page 1 (writing): it waits before its whole process.
    The shard stops meanwhile: page 4 never starts, the checkpoint stays at page 1."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c")]
    records += [keyed(4, "a"), keyed(5, "e"), keyed(6, "f")]
    stream = FakeStream({"s1": records})
    checkpoints, go, stop = FakeCheckpoints(), threading.Event(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints, stop=stop)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 1")
    assert not_within(journal, "start 4", 0.2)
    stop.set()
    go.set()
    stepping.join(WAIT)
    w.flush()
    assert "start 4" not in journal.events and "writes 4" not in journal.events
    assert saved(checkpoints) == {f"{3:021d}"}


class HeldPages:
    """A Process through the real replicator that notes each page's ``ready`` and writes;
    page 1's writes wait until page 2's writes started (its ``ready`` returned)."""

    def __init__(self, replicator: Replicator, firsts: list[str]) -> None:
        self.replicator = replicator
        self.firsts = firsts  # each page's first sequence number
        self.page_2_writes = threading.Event()
        self.order: list[str] = []
        self.lock = threading.Lock()

    def note(self, event: str) -> None:
        with self.lock:
            self.order.append(event)

    def __call__(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        page = self.firsts.index(str(records[0]["dynamodb"]["SequenceNumber"])) + 1
        assert ready is not None

        def held_ready() -> None:
            self.note(f"ready {page}")
            ready()
            if page == 1:
                assert self.page_2_writes.wait(WAIT)
            self.note(f"writes {page}")
            if page == 2:
                self.page_2_writes.set()  # its writes start; page 1 has written nothing

        return self.replicator.process(
            table,
            records,
            from_json=False,
            regions=targets,
            logged=logged,
            written=written,
            ready=held_ready,
        )


def three_pages(world: StreamRegions, k: dict[str, ItemKey]) -> tuple[int, int]:
    """Page 1 deletes a; page 2 has keys of its own; page 3 re-inserts a and deletes b.
    The stream's range (start, end) of these records."""

    def put(name: str, stamp: int) -> None:
        world.put(EU, k[name], **{FIELDS.timestamp: n(T + stamp), "content": n(stamp)})

    for i, name in enumerate("abcdef"):
        put(name, i)
    world.quiesce()
    start = len(world.stores[EU].stream)
    world.delete(EU, k["a"])  # page 1
    put("b", 100)
    put("g", 101)
    put("d", 102)  # page 2: none of page 1's keys
    world.delete(EU, k["e"])
    put("h", 103)
    put("a", 104)  # page 3: a and b again
    world.delete(EU, k["b"])
    put("c", 105)
    return start, len(world.stores[EU].stream)


def test_a_page_of_other_keys_writing_before_the_one_before_converges_deletes_and_reinserts() -> (
    None
):
    """End to end (real Replicator, StoreWriter, WriteProtocol, tombstones): page 2 (keys
    of its own) does its source tombstone read, plan, P0 and its writes before page 1
    (which deletes a) writes anything; page 3 (a and b again) waits with its reads for
    both. Nothing is lost, nothing deleted comes back, the checkpoint reaches the last
    record."""
    world = StreamRegions([EU, US])
    try:
        k = {name: world.key(name) for name in "abcdefgh"}
        start, end = three_pages(world, k)
        records = [dict(r) for r in world.stores[EU].stream[start:end]]
        assert len(records) == 9
        process = HeldPages(
            world.replicators[EU],
            [str(records[i]["dynamodb"]["SequenceNumber"]) for i in (0, 3, 6)],
        )
        checkpoints, ref = FakeCheckpoints(), ShardRef(TABLE, "arn:stream", "s1")
        w = ShardWorker(
            ref,
            source=FakeStream({"s1": records}),
            checkpoints=checkpoints,
            process=process,
            targets=[US],
            parent=None,
            clock=ManualClock(),
            page_limit=3,
        )
        for _ in range(4):
            w.step()
        w.flush()
        order = process.order
        assert order.index("ready 2") < order.index("writes 2") < order.index("writes 1")
        assert order.index("writes 1") < order.index("ready 3")
        assert set(checkpoints.saved[ref].values()) == {
            str(records[-1]["dynamodb"]["SequenceNumber"])
        }
        world.read[EU] = end  # the worker replicated those; the rest (echoes) by the pump
        world.quiesce()
        expected = {"a": 104, "b": None, "c": 105, "d": 102, "e": None, "f": 5, "g": 101, "h": 103}
        for name, value in expected.items():
            want = None
            if value is not None:
                want = {"pk": s(name), FIELDS.timestamp: n(T + value), "content": n(value)}
            assert world.contents(k[name]) == {EU: want, US: want}, name
        assert world.violations == []
    finally:
        world.close()
