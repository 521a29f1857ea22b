"""Adversarial review of five pages in flight with early writes (runner/pipeline.py
``Flight.launch``, runner/shard_pages.py ``_fill``): a page sharing no key with a page
before it still writing reads and writes beside those pages; caught up, an empty read
ahead moves the cursor's iterator and looks again. Attacks that held stay as tests named
by what they pin; the two that broke a rule are fixed and pinned here:
- a region whose reads of a page end after the shard stopped starts none of its writes
  (``ready`` runs before each region's writes, not only the first);
- a target removed and added back (two reloads) while a page of its old cursor still
  writes it joins once that page ended, not as a cursor of its own that would write its
  keys beside it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pytest

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import ReplicatorError, UnreachableError
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import Deadline, Prefetched, TargetResult
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.streams import END, Page, ShardRef
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .fakes import FixedTombstones, WrappedWriter
from .stream_regions import EU, US, StreamRegions, T, n
from .stream_regions import TABLE as WORLD_TABLE
from .test_pipeline import WAIT, Journal, saved
from .test_pipeline_overlapping_reads import keyed, not_within
from .test_pipeline_read_ahead import Checking, LoggedStream
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream

REF = ShardRef("Orders", ARN, "s1")
FIELDS_TS = SystemAttributes().timestamp


def at(n: int) -> str:
    return f"{n:021d}"


def seq_of(r: Mapping[str, Any]) -> int:
    return int(r["dynamodb"]["SequenceNumber"])


def key_of(r: Mapping[str, Any]) -> str:
    return str(r["dynamodb"]["Keys"]["pk"]["S"])


def shard_worker(process: Any, stream: Any, checkpoints: Any, **kwargs: Any) -> ShardWorker:
    options: dict[str, Any] = {"clock": ManualClock(), "page_limit": 1, "targets": TARGETS}
    options.update(kwargs)
    return ShardWorker(
        REF, source=stream, checkpoints=checkpoints, process=process, parent=None, **options
    )


def before(journal: Journal, first: str, then: str) -> bool:
    return journal.events.index(first) < journal.events.index(then)


# -- attacks that held: writes of one key in stream order ---------------------------------


def test_five_pages_early_ones_write_beside_and_a_shared_key_waits_for_every_page_before() -> None:
    """Keys a b a c b, one record a page, all five in flight. Pages 2 (b) and 4 (c) share
    no key with a page still writing: they write while page 1 (a) still writes. Page 3 (a)
    and page 5 (b) wait, before their reads, for every page before them: page 5 even
    once page 2 (its only key's writer) is written, until page 1 is."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "a"), keyed(4, "c"), keyed(5, "b")]
    stream = FakeStream({"s1": records})
    checkpoints = FakeCheckpoints()
    g1, g2 = threading.Event(), threading.Event()
    journal = Journal(before_written={1: g1, 2: g2})
    w = shard_worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 2")
    journal.wait_for("writes 4")  # page 4 shares no key with 1, 2 or 3: it writes now
    journal.wait_for("written 4")
    assert "written 1" not in journal.events and "written 2" not in journal.events
    assert not_within(journal, "start 3") and "start 5" not in journal.events
    g2.set()  # page 5's key is written, but page 1 still writes: page 5 still waits
    journal.wait_for("written 2")
    assert not_within(journal, "start 5")
    g1.set()
    stepping.join(WAIT)
    journal.wait_for("end 5")
    for _ in range(6):
        w.step()
    assert before(journal, "written 1", "start 3") and before(journal, "written 2", "start 5")
    assert before(journal, "written 1", "start 5")
    assert saved(checkpoints) == {at(5)}


class KeyOrder:
    """A Process that applies each record to each target in turn, holding each page a
    seeded while; it notes every write of a key to a target that begins while another
    page writes that key to that target, and every key whose writes to a target go back
    in the stream (without a failure or a replay, none may)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.writing: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], int] = {}
        self.found: list[str] = []
        self.overlapped = 0  # pages written while another page wrote (early pages)
        self.pages_writing = 0
        self.saved: dict[str, str] = {}
        self.applied: dict[str, set[int]] = {t: set() for t in TARGETS}

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved)

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        with self.lock:
            for target, position in positions.items():
                if position == END:
                    continue
                missing = [n for n in range(1, int(position) + 1) if n not in self.applied[target]]
                if missing:
                    self.found.append(f"{target}: checkpoint {position} passes {missing}")
                self.saved[target] = position

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
        with self.lock:
            pause = self.rng.random() * 0.004
        time.sleep(pause / 2)  # its reads: a seeded while
        if ready is not None:
            ready()
        mine = [(t, key_of(r)) for t in sorted(targets) for r in records]
        with self.lock:
            self.pages_writing += 1
            if self.pages_writing > 1:
                self.overlapped += 1
            for pair in set(mine):
                if self.writing.get(pair):
                    self.found.append(f"{pair}: written by two pages at once")
                self.writing[pair] = self.writing.get(pair, 0) + 1
        time.sleep(pause)
        with self.lock:
            for target in sorted(targets):
                for r in records:
                    pair = (target, key_of(r))
                    n = seq_of(r)
                    if self.last.get(pair, 0) >= n:
                        self.found.append(f"{pair}: {n} after {self.last[pair]}")
                    self.last[pair] = n
                    self.applied[target].add(n)
            for pair in set(mine):
                self.writing[pair] -= 1
            self.pages_writing -= 1
        if written is not None:
            written()
        return BatchResult({t: TargetResult(t) for t in targets})


@pytest.mark.parametrize("seed", range(4))
def test_seeded_pages_of_few_keys_never_write_one_key_twice_at_once_nor_out_of_order(
    seed: int,
) -> None:
    """Full pages of 1 or 2 records over 6 keys, five in flight, each held a seeded while:
    early pages write beside others (asserted), yet no key is written to a target by two
    pages at once nor out of stream order, and every checkpoint follows its records."""
    rng = random.Random(seed)
    records = [keyed(n, f"k{rng.randrange(6)}") for n in range(1, 121)]
    stream = FakeStream({"s1": records})
    order = KeyOrder(seed)
    w = shard_worker(order, stream, order, page_limit=rng.choice([1, 2]))
    for _ in range(400):
        if all(order.saved.get(t) == at(120) for t in TARGETS) and not w.cursors[0].inflight:
            break
        w.clock.t += 1  # type: ignore[attr-defined]
        w.step()
    w.flush()
    assert order.found == []
    assert order.overlapped > 0  # early pages did write beside others
    assert all(order.saved.get(t) == at(120) for t in TARGETS)


# -- attacks that held: checkpoints past a failed page with early pages after it -----------


def test_a_target_failing_in_the_oldest_page_is_not_checkpointed_past_it_by_an_early_page() -> None:
    """Page 1 (a) fails for one target while pages 2-5 (other keys, early) were written to
    every target before page 1 settled: the failed target's checkpoint stays before page
    1; it replays from there; no checkpoint passes a record its target did not apply."""
    stream = LoggedStream({"s1": []}, keys=None)
    stream.shards["s1"] = [keyed(n, f"k{n}") for n in range(1, 8)]
    checking = Checking(stream)
    hold = threading.Event()
    failed_once: list[int] = []

    def fail(target: str, n: int) -> ReplicatorError | None:
        if target == "us-east-1" and n == 1 and not failed_once:
            failed_once.append(n)
            return UnreachableError("down")
        return None

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq_of(records[0]) == 1 and not hold.is_set():
            assert hold.wait(WAIT)

    checking.fail, checking.during = fail, during
    w = shard_worker(checking, stream, checking)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    began = time.monotonic()
    while len(checking.applied["us-east-1"]) < 4 and time.monotonic() - began < WAIT:
        time.sleep(0.002)
    assert sorted(checking.applied["us-east-1"]) == [2, 3, 4, 5]  # early pages, page 1 held
    hold.set()
    stepping.join(WAIT)
    assert checking.saved.get("us-east-1") is None  # nothing before page 1's failure
    assert checking.saved.get("eu-west-1") == at(1)
    for _ in range(40):
        if checking.caught_up() and not any(c.inflight for c in w.cursors):
            break
        w.clock.t += 60  # type: ignore[attr-defined]
        with contextlib.suppress(ReplicatorError):
            w.step()
    w.flush()
    assert [f for f in checking.found if "checkpoint" in f] == []
    assert checking.caught_up()
    assert sorted(set(checking.applied["us-east-1"])) == list(range(1, 8))


# -- attacks that held: a stop with five pages in flight ------------------------------------


def test_a_stop_with_five_pages_in_flight_starts_no_waiting_page_and_checkpoints_before_it() -> (
    None
):
    """Keys a b a c d: page 3 (a) waits for page 1; pages 2, 4 and 5 write early. The
    shard stops while page 1 still writes: page 3 never reads nor writes, the checkpoint
    stops before it (pages 4 and 5, written, are replayed), the cursor reads again from
    the checkpoint."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "a"), keyed(4, "c"), keyed(5, "d")]
    stream = FakeStream({"s1": records})
    checkpoints, stop, g1 = FakeCheckpoints(), threading.Event(), threading.Event()
    journal = Journal(before_written={1: g1})
    w = shard_worker(journal, stream, checkpoints, stop=stop)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    for page in (2, 4, 5):
        journal.wait_for(f"end {page}")
    stop.set()
    g1.set()
    stepping.join(WAIT)
    w.flush()
    assert "start 3" not in journal.events and "writes 3" not in journal.events
    assert saved(checkpoints) == {at(2)}
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None


# -- attacks that held: an empty read ahead moved the iterator -----------------------------


def test_an_empty_read_ahead_then_the_oldest_page_failing_everywhere_skips_nothing() -> None:
    """Caught up: page 1 (short) writes, the read after it is empty and moves the
    cursor's iterator past it; then page 1 fails for every target. The cursor must read
    again from its checkpoint (before page 1), not from the moved iterator."""
    stream = LoggedStream({"s1": []}, keys=3)
    stream.shards["s1"] = [stream.record(1)]
    checking = Checking(stream)
    failed: list[int] = []

    def fail(target: str, n: int) -> ReplicatorError | None:
        if n == 1 and len(failed) < len(TARGETS):
            failed.append(n)
            return UnreachableError("down")
        return None

    checking.fail = fail
    w = shard_worker(checking, stream, checking, page_limit=5)
    w.step()
    (cursor,) = w.cursors
    assert len(stream.reads) == 2  # page 1, then the empty read after it
    assert cursor.failures == 1 and cursor.iterator is None and cursor.inflight == ()
    stream.append(2)
    stream.append(3)
    for _ in range(40):
        if checking.caught_up():
            break
        w.clock.t += 60  # type: ignore[attr-defined]
        with contextlib.suppress(ReplicatorError):
            w.step()
    w.flush()
    assert [f for f in checking.found if "checkpoint" in f] == []
    for target in TARGETS:
        assert checking.applied[target] == [1, 2, 3]


def test_an_empty_read_ahead_then_a_failed_read_resumes_after_the_last_page_in_flight() -> None:
    """Pages 1 and 2 in flight, the read after page 2 is empty (the iterator moved past
    it), the next one fails: the cursor reads again right after page 2's last record (a
    new iterator there), neither from the moved iterator nor from page 1."""
    stream = LoggedStream({"s1": []}, keys=None)
    stream.shards["s1"] = [keyed(1, "a"), keyed(2, "b")]
    checking = Checking(stream)
    reads = [0]

    def on_read(iterator: str) -> None:
        reads[0] += 1
        if reads[0] == 4:
            raise UnreachableError("stream down")

    stream.on_read = on_read
    clock = ManualClock()
    w = shard_worker(checking, stream, checking, clock=clock)
    w.step()
    for _ in range(10):
        clock.t += 60
        with contextlib.suppress(ReplicatorError):
            w.step()
        if reads[0] >= 4:
            break
    stream.append(3)
    stream.shards["s1"][-1]["dynamodb"]["Keys"] = {"pk": {"S": "c"}}
    for _ in range(20):
        if checking.caught_up():
            break
        clock.t += 60
        with contextlib.suppress(ReplicatorError):
            w.step()
    w.flush()
    assert [f for f in checking.found if "checkpoint" in f] == []
    for target in TARGETS:
        assert checking.applied[target] == [1, 2, 3]


class Fenced:
    """The dead worker's view of the checkpoint store: once ``dead``, it saves nothing."""

    def __init__(self, store: Checking) -> None:
        self.store = store
        self.dead = False

    def load(self, shard: ShardRef) -> dict[str, str]:
        return self.store.load(shard)

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        if not self.dead:
            self.store.save(shard, positions)


# -- attacks that held: a kill with early pages written past the checkpoint -----------------


def test_a_kill_with_early_pages_written_past_the_oldest_resumes_from_its_checkpoint() -> None:
    """Pages 2-5 (keys of their own) were written early while page 1 still writes; the
    process dies (the worker is dropped, nothing flushed). A new worker resumes from the
    checkpoint before page 1: every record reaches every target, none is checkpointed
    unapplied."""
    stream = LoggedStream({"s1": []}, keys=None)
    stream.shards["s1"] = [keyed(n, f"k{n}") for n in range(1, 8)]
    checking = Checking(stream)
    hold = threading.Event()

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq_of(records[0]) == 1 and not hold.is_set():
            assert hold.wait(WAIT)

    checking.during = during
    fenced = Fenced(checking)
    dead = shard_worker(checking, stream, fenced)
    stepping = threading.Thread(target=dead.step, daemon=True)
    stepping.start()
    began = time.monotonic()
    while len(checking.applied["eu-west-1"]) < 4 and time.monotonic() - began < WAIT:
        time.sleep(0.002)
    assert sorted(checking.applied["eu-west-1"]) == [2, 3, 4, 5] and checking.saved == {}
    # kill -9: the dead worker saves nothing more (its pages never settle).
    fenced.dead = True
    checking.during = None
    alive = shard_worker(checking, stream, checking)
    for _ in range(20):
        if checking.caught_up():
            break
        alive.clock.t += 60  # type: ignore[attr-defined]
        alive.step()
    alive.flush()
    hold.set()
    stepping.join(WAIT)
    assert [f for f in checking.found if "checkpoint" in f] == []
    assert checking.caught_up()


# -- findings --------------------------------------------------------------------------------


class GatedWriter:
    """A target writer whose prefetch (P0) and writes a test can hold per page (the page
    is told by ``table``); it notes when each batch's writes begin and whether the
    shard's stop was set then."""

    def __init__(self, name: str, stop: threading.Event, notes: list[tuple[str, str, bool]]):
        self.name = name
        self.stop = stop
        self.notes = notes
        self.hold_reads: dict[str, threading.Event] = {}
        self.hold_writes: dict[str, threading.Event] = {}

    @property
    def region(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        gate = self.hold_reads.get(table)
        if gate is not None:
            assert gate.wait(WAIT)
        return Prefetched()

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        self.notes.append((self.name, table, self.stop.is_set()))
        gate = self.hold_writes.get(table)
        if gate is not None:
            assert gate.wait(WAIT)
        if written is not None:
            written()
        return TargetResult(self.name)


def test_a_region_whose_reads_end_after_the_stop_starts_no_write_of_a_page_read_ahead() -> None:
    """Page 1 writes (held); page 2 (another key) is read ahead and, early, goes ahead.
    Its reads in eu-west-1 end first: ``ready`` passes, eu-west-1's writes start. The
    shard stops. Its reads in us-east-1 end after the stop: us-east-1's writes of page 2
    must not start (guarantees: once the shard stops, no write of a page read ahead
    starts). ``Replicator._read_then_write`` hands each region's writes over as its reads
    end, with the stop checked only once, in ``ready`` after the first region's reads."""
    stop = threading.Event()
    notes: list[tuple[str, str, bool]] = []
    regions = ["eu-west-1", "us-east-1"]
    writers = {r: GatedWriter(r, stop, notes) for r in regions}
    fields = SystemAttributes()
    replicator = Replicator(
        source="eu-west-1",
        writers=writers,
        tombstones=FixedTombstones(),
        policy=LastWriterWins(fields),
        fields=fields,
    )
    g1, us_reads_2 = threading.Event(), threading.Event()
    for writer in writers.values():
        writer.hold_writes["p1"] = g1
    writers["us-east-1"].hold_reads["p2"] = us_reads_2

    def process(
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        page = f"p{seq_of(records[0])}"  # the writers tell pages by their table
        return replicator.process(
            page, [], from_json=False, regions=targets, written=written, ready=ready
        )

    stream = FakeStream({"s1": [keyed(1, "a"), keyed(2, "b")]})
    w = shard_worker(process, stream, FakeCheckpoints(), stop=stop, targets=regions)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    began = time.monotonic()
    while ("eu-west-1", "p2", False) not in notes and time.monotonic() - began < WAIT:
        time.sleep(0.002)
    assert ("eu-west-1", "p2", False) in notes  # page 2's writes began before the stop
    stop.set()
    us_reads_2.set()  # us-east-1's reads of page 2 end after the stop
    g1.set()
    stepping.join(WAIT)
    w.flush()
    replicator.close()
    assert [n for n in notes if n[2]] == []  # no batch's writes began after the stop


# -- attacks that held: no spin while the oldest page hangs ---------------------------------


class RealClock(ManualClock):
    """Elapsed time is real (the cadence's waits take real time); ``now`` is fixed."""

    def elapsed(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(seconds, 0.0))
            return False
        return stop.wait(max(seconds, 0.0))


def test_a_quiet_shard_is_polled_no_faster_than_look_again_while_the_oldest_page_hangs() -> None:
    """Caught up, one page in flight whose writes hang 0.8 s and nothing more in the shard:
    the empty reads after it come at most every ``LOOK_AGAIN_S`` (0.2 s), and the page
    settles as soon as it ends (the step does not wait out a look again after it)."""
    stream = LoggedStream({"s1": []}, keys=None)
    stream.shards["s1"] = [keyed(1, "a")]
    checking = Checking(stream)
    release = threading.Event()

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        assert release.wait(WAIT)

    checking.during = during
    w = shard_worker(checking, stream, checking, clock=RealClock(), page_limit=5)
    stepping = threading.Thread(target=w.step, daemon=True)
    began = time.monotonic()
    stepping.start()
    time.sleep(0.8)
    reads_at_release = len(stream.reads)
    release.set()
    stepping.join(WAIT)
    took = time.monotonic() - began
    assert not stepping.is_alive()
    assert checking.saved == dict.fromkeys(TARGETS, at(1))
    # One read of page 1, then empty ones at least 0.2 s apart over 0.8 s: at most 5.
    assert 2 <= reads_at_release <= 6, stream.reads
    # Settled as soon as it ended: no further look (one may have been under way).
    assert len(stream.reads) <= reads_at_release + 1
    assert took < 0.8 + 1.0


# -- findings (continued) ------------------------------------------------------------------


def test_a_target_removed_and_added_back_is_not_written_by_two_pages_at_once() -> None:
    """Keys a b c d b, one record a page. Page 5 (b, after page 2's b) writes and hangs.
    A reload removes us-east-1 (taken up at the next step: the cursor keeps its pages in
    flight, page 5 still writing it); another adds it back. A cursor of its own at its
    checkpoint (1) would launch record 2 (key b) with nothing before it and write b to
    us-east-1 while page 5 still writes b there: the target joins only once page 5
    ended, and then replays from its checkpoint to the end."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c"), keyed(4, "d"), keyed(5, "b")]
    stream = FakeStream({"s1": records})
    order = KeyOrder(0)
    release = threading.Event()
    inner = order.__call__

    def process(
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if seq_of(records[0]) != 5:
            return inner(table, records, targets, logged, written, ready=ready)
        # page 5: mark its pairs writing, hang, then finish as KeyOrder does
        if ready is not None:
            ready()
        mine = {(t, key_of(r)) for t in targets for r in records}
        with order.lock:
            for pair in mine:
                order.writing[pair] = order.writing.get(pair, 0) + 1
        order_writing_5.set()
        assert release.wait(WAIT)
        with order.lock:
            for pair in mine:
                order.writing[pair] -= 1
            for t in targets:
                order.applied[t].add(5)
        order_writing_5_done.set()
        if written is not None:
            written()
        return BatchResult({t: TargetResult(t) for t in targets})

    order_writing_5, order_writing_5_done = threading.Event(), threading.Event()
    w = shard_worker(process, stream, order)
    w.step()  # pages 1-5 launched, page 1 settled; page 5 writes (hangs)
    assert order_writing_5.wait(WAIT)
    assert order.saved == dict.fromkeys(TARGETS, at(1))
    w.remove_targets(["us-east-1"])
    w.step()  # the removal taken up: page 2 settles for the others
    assert order.saved["us-east-1"] == at(1) and order.saved["eu-west-1"] == at(2)
    w.add_targets(["us-east-1"])
    w.step()  # settles the next page; page 5 still writes us-east-1
    # The state named: us-east-1 added back, page 5 still writing it, no cursor of its own.
    assert not order_writing_5_done.is_set()
    assert any(f.records[0] is records[4] for c in w.cursors for f in c.inflight)
    assert "us-east-1" not in w.targets
    assert len(w.cursors) == 1 and "us-east-1" not in w.cursors[0].targets
    release.set()
    for _ in range(20):
        if all(order.saved.get(t) == at(5) for t in TARGETS) and not any(
            c.inflight for c in w.cursors
        ):
            break
        w.clock.t += 60  # type: ignore[attr-defined]
        w.step()
    w.flush()
    assert "us-east-1" in w.targets and all(order.saved.get(t) == at(5) for t in TARGETS)
    assert [f for f in order.found if "checkpoint" in f] == []
    # (the replay's going back in the stream is a replay's: only the overlap is the finding)
    assert [f for f in order.found if "at once" in f] == []


# -- attacks that held: the real write rules under early pages -------------------------------


class Jittered:
    """A Process through the real replicator whose pages each wait a seeded while before
    their reads and before their writes: early pages overtake the pages before them."""

    def __init__(self, replicator: Replicator, seed: int) -> None:
        self.replicator = replicator
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.writing = 0
        self.overlapped = 0  # pages that began writing while another page wrote

    def pause(self) -> None:
        with self.lock:
            wait = self.rng.random() * 0.003
        time.sleep(wait)

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
        assert ready is not None
        self.pause()

        began = threading.Event()

        def late_ready() -> None:
            self.pause()
            ready()
            with self.lock:
                self.writing += 1
                self.overlapped += self.writing > 1
            began.set()
            self.pause()  # its writes start late: the pages after it may overtake

        def done() -> None:
            if began.is_set():
                with self.lock:
                    self.writing -= 1
            if written is not None:
                written()

        return self.replicator.process(
            table,
            records,
            from_json=False,
            regions=targets,
            logged=logged,
            written=done,
            ready=late_ready,
        )


@pytest.mark.parametrize("seed", range(3))
def test_seeded_puts_and_deletes_of_few_keys_through_five_pages_converge(seed: int) -> None:
    """Real Replicator, StoreWriter and tombstones: 60 puts and deletes of 8 keys
    in eu-west-1, replicated to us-east-1 by one shard worker, pages of 1 or 2 records,
    five in flight, each page jittered (early pages overtake): us-east-1 ends with what
    eu-west-1 holds for every key, nothing deleted comes back, the checkpoint reaches the
    last record."""
    rng = random.Random(seed)
    world = StreamRegions([EU, US])
    try:
        names = [f"k{i}" for i in range(8)]
        keys = {name: world.key(name) for name in names}
        start = len(world.stores[EU].stream)
        for stamp in range(1, 61):
            name = rng.choice(names)
            if rng.random() < 0.3 and world.stores[EU].item(WORLD_TABLE, keys[name]) is not None:
                world.delete(EU, keys[name])
            else:
                world.put(EU, keys[name], **{FIELDS_TS: n(T + stamp), "content": n(stamp)})
        end = len(world.stores[EU].stream)
        records = [dict(r) for r in world.stores[EU].stream[start:end]]
        checkpoints, ref = FakeCheckpoints(), ShardRef(WORLD_TABLE, "arn:stream", "s1")
        w = ShardWorker(
            ref,
            source=FakeStream({"s1": records}),
            checkpoints=checkpoints,
            process=(jittered := Jittered(world.replicators[EU], seed)),
            targets=[US],
            parent=None,
            clock=ManualClock(),
            page_limit=rng.choice([1, 2]),
        )
        last = str(records[-1]["dynamodb"]["SequenceNumber"])
        for _ in range(200):
            if checkpoints.saved.get(ref, {}).get(US) == last and not w.cursors[0].inflight:
                break
            w.clock.t += 1  # type: ignore[attr-defined]
            w.step()
        w.flush()
        assert checkpoints.saved[ref][US] == last
        assert jittered.overlapped > 0  # early pages wrote beside the pages before them
        world.read[EU] = end  # replicated by the worker; the echoes by the pump
        world.quiesce()
        for name in names:
            contents = world.contents(keys[name])
            assert contents[US] == contents[EU], name
        assert world.violations == []
    finally:
        world.close()


# -- attacks that held: the cursor fuzz with keys (early pages), splits, reloads ------------


class KeyedRecords(list):  # type: ignore[type-arg]
    """The fuzz's shard: every record appended gets one of seven keys (by its sequence)."""

    def append(self, r: dict[str, Any]) -> None:
        r["dynamodb"]["Keys"] = {"pk": {"S": f"k{seq_of(r) * 2654435761 % 7}"}}
        super().append(r)


def keyed_fuzz(seed: int) -> Any:
    from .cursor_fuzz import CursorFuzz  # noqa: PLC0415

    class KeyedFuzz(CursorFuzz):
        """``CursorFuzz`` (throttles, deadlines, splits, merges, a target removed and added
        back, expired iterators, bursts) over records of seven keys, so that pages go
        early; each page's writes are marked per target and key while they run."""

        def __init__(self, seed: int) -> None:
            super().__init__(seed)
            shard = KeyedRecords()
            for r in self.stream.shards["s1"]:
                shard.append(r)
            self.stream.shards["s1"] = shard
            self.marks: dict[tuple[str, str], int] = {}
            self.overlapped = 0
            self.running = 0

        def process(
            self,
            table: str,
            records: Sequence[Mapping[str, Any]],
            targets: Collection[str],
            logged: Callable[[Conflict], bool] | None = None,
            written: Callable[[], None] | None = None,
            *,
            ready: Callable[[], None] | None = None,
        ) -> BatchResult:
            if ready is not None:
                ready()
            mine = {(t, key_of(r)) for t in targets for r in records}
            with self.lock:
                self.running += 1
                self.overlapped += self.running > 1
                for pair in mine:
                    if self.marks.get(pair):
                        self.found.append(f"{pair} written by two pages at once")
                    self.marks[pair] = self.marks.get(pair, 0) + 1
            time.sleep(0.0003)
            try:
                return super().process(table, records, targets, logged, None)
            finally:
                with self.lock:
                    for pair in mine:
                        self.marks[pair] -= 1
                    self.running -= 1
                if written is not None:
                    written()

    return KeyedFuzz(seed)


@pytest.mark.parametrize("seed", range(6))
def test_the_cursor_fuzz_with_keyed_records_keeps_checkpoints_and_one_writer_a_key(
    seed: int,
) -> None:
    fuzz = keyed_fuzz(seed)
    fuzz.run(steps=300)
    assert fuzz.overlapped > 0  # early pages wrote beside others
    assert fuzz.violations() == []


# -- attacks that held: a split's replay writes a key again after a later page wrote it -----


class FailingOnce(WrappedWriter):
    """A target writer that fails (unreachable, nothing written) the first batch holding
    the record ``at``, then hands every batch to ``inner``."""

    def __init__(self, inner: Any, at: str) -> None:
        super().__init__(inner)
        self.at = at
        self.failed = False

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        if not self.failed and any(op.sequence_number == self.at for op in ops):
            self.failed = True
            if written is not None:
                written()
            return TargetResult(
                self.region, failed_sequence=self.at, error=UnreachableError("down")
            )
        return super().apply(table, ops, deadline=deadline, written=written, prefetched=prefetched)


def test_a_failed_delete_replayed_after_a_later_page_reinserted_the_key_does_not_remove_it() -> (
    None
):
    """Put a, put b, delete a, re-insert a (newer), put c; one record a page. us-east-1
    fails the delete of a once: the page after it (a again) waits for its writes (given up)
    and writes the re-insert; the failed target splits off and replays the delete after
    it. The replayed delete (of the older version) leaves the re-insert in place; both
    regions end alike."""
    world = StreamRegions([EU, US])
    try:
        keys = {name: world.key(name) for name in "abc"}
        start = len(world.stores[EU].stream)

        def put(name: str, stamp: int) -> None:
            world.put(EU, keys[name], **{FIELDS_TS: n(T + stamp), "content": n(stamp)})

        put("a", 1)
        put("b", 2)
        world.delete(EU, keys["a"])
        put("a", 4)
        put("c", 5)
        end = len(world.stores[EU].stream)
        records = [dict(r) for r in world.stores[EU].stream[start:end]]
        assert len(records) == 5
        replicator = world.replicators[EU]
        delete_at = str(records[2]["dynamodb"]["SequenceNumber"])
        failing = FailingOnce(replicator.writers[US], delete_at)
        replicator.writers[US] = failing
        journal: list[str] = []

        def process(
            table: str,
            records: Sequence[Mapping[str, Any]],
            targets: Collection[str],
            logged: Callable[[Conflict], bool] | None = None,
            written: Callable[[], None] | None = None,
            *,
            ready: Callable[[], None] | None = None,
        ) -> BatchResult:
            journal.append(f"page {records[0]['dynamodb']['SequenceNumber']}")
            return replicator.process(
                table,
                records,
                from_json=False,
                regions=targets,
                logged=logged,
                written=written,
                ready=ready,
            )

        checkpoints, ref = FakeCheckpoints(), ShardRef(WORLD_TABLE, "arn:stream", "s1")
        w = ShardWorker(
            ref,
            source=FakeStream({"s1": records}),
            checkpoints=checkpoints,
            process=process,
            targets=[US],
            parent=None,
            clock=ManualClock(),
            page_limit=1,
        )
        last = str(records[-1]["dynamodb"]["SequenceNumber"])
        for _ in range(30):
            if checkpoints.saved.get(ref, {}).get(US) == last and not any(
                c.inflight for c in w.cursors
            ):
                break
            w.clock.t += 60  # type: ignore[attr-defined]
            w.step()
        w.flush()
        assert failing.failed
        assert journal.count(f"page {delete_at}") == 2  # the delete was replayed
        reinsert = f"page {records[3]['dynamodb']['SequenceNumber']}"
        assert journal.index(reinsert) < len(journal) - 1 - journal[::-1].index(
            f"page {delete_at}"
        )  # ... after the re-insert was written
        assert checkpoints.saved[ref][US] == last
        world.read[EU] = end
        world.quiesce()
        for name in "abc":
            contents = world.contents(keys[name])
            assert contents[US] == contents[EU], name
        assert world.contents(keys["a"])[US] is not None
        assert world.violations == []
    finally:
        world.close()


# -- attacks that held: the lease lost at a checkpoint with five pages in flight -------------


def test_a_lease_lost_at_the_oldest_pages_checkpoint_leaves_no_page_running_unseen() -> None:
    """Keys a b a c d, five pages in flight (page 3 waits for page 1, the others early).
    Saving page 1's checkpoint finds the lease lost: the step raises only once every page
    in flight has ended (none runs on unseen), nothing more is checkpointed, and the
    cursor reads again from its checkpoint."""
    from dynamodb_replicator.core.streams import LeaseLostError  # noqa: PLC0415

    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "a"), keyed(4, "c"), keyed(5, "d")]
    stream = FakeStream({"s1": records})
    slow = threading.Event()

    class Lost(FakeCheckpoints):
        def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
            raise LeaseLostError("another worker holds the lease")

    checkpoints = Lost()
    journal = Journal(before_written={4: slow})

    def release_later() -> None:
        time.sleep(0.2)
        slow.set()

    w = shard_worker(journal, stream, checkpoints)
    threading.Thread(target=release_later, daemon=True).start()
    with pytest.raises(LeaseLostError):
        w.step()
    assert slow.is_set()  # the step waited for page 4's writes
    for page in range(1, 6):
        assert f"end {page}" in journal.events  # every page ended before the step raised
    assert checkpoints.saved == {}
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None and cursor.position is None


# -- attacks that held: a page with a record of no readable key ------------------------------


def test_a_page_without_readable_keys_waits_and_every_page_after_it_waits_for_it() -> None:
    """Page 1 (a) writes (held); page 2 has a record without Keys: it shares every key,
    so it waits for page 1; page 3 (c, a key of its own) shares every key with page 2
    (still to write): it waits too, for pages 1 and 2."""
    from .test_shardworker import record  # noqa: PLC0415

    records = [keyed(1, "a"), record(2), keyed(3, "c")]
    stream = FakeStream({"s1": records})
    checkpoints, g1 = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: g1})
    w = shard_worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 1")
    assert not_within(journal, "start 2") and "start 3" not in journal.events
    g1.set()
    stepping.join(WAIT)
    journal.wait_for("end 3")
    for _ in range(4):
        w.step()
    assert before(journal, "written 1", "start 2") and before(journal, "written 2", "start 3")
    assert saved(checkpoints) == {at(3)}


# -- attacks that held: a kill with early pages written, replayed under the real rules -------


class HeldThenDead(WrappedWriter):
    """A target writer whose first batch holding record ``at`` waits for ``gate``; once the
    process is ``dead`` that batch returns without writing (its process died with it)."""

    def __init__(self, inner: Any, at: str) -> None:
        super().__init__(inner)
        self.at = at
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.dead = False
        self.held_once = False
        self.lock = threading.Lock()
        self.done: list[str] = []  # first sequence of each batch that ended

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        with self.lock:
            hold = not self.held_once and any(op.sequence_number == self.at for op in ops)
            self.held_once = self.held_once or hold
        if hold:
            self.holding.set()
            assert self.gate.wait(WAIT)
            if self.dead:
                return TargetResult(
                    self.region, failed_sequence=self.at, error=UnreachableError("dead")
                )
        result = super().apply(
            table, ops, deadline=deadline, written=written, prefetched=prefetched
        )
        with self.lock:
            self.done.extend(op.sequence_number for op in ops[:1])
        return result


def through(replicator: Replicator) -> Callable[..., BatchResult]:
    """The shard worker's Process over ``replicator`` (as the runner's, without fences)."""

    def process(
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        return replicator.process(
            table,
            records,
            from_json=False,
            regions=targets,
            logged=logged,
            written=written,
            ready=ready,
        )

    return process


class SlowReads(FakeStream):
    """Each GetRecords takes 50 ms: a page is written before the next one is read, so a
    page sharing a key only with a page already written goes early."""

    def read(self, iterator: str, limit: int = 1000) -> Page:
        time.sleep(0.05)
        return super().read(iterator, limit)


def test_a_kill_after_early_pages_wrote_replays_to_the_same_end_under_the_real_rules() -> None:
    """Put a, put b, delete b, put c, re-insert b (newer); one record a page, each read
    after the page before it was written. Page 1's writes to us-east-1 hang; pages 2-5
    (each sharing a key only with a page written) go early and are written there. The
    runner dies (page 1 never lands, nothing checkpointed past it). A new worker replays
    all five from the start over what the early pages left: the replayed delete of b
    (older) leaves the re-insert, and both regions end alike."""
    world = StreamRegions([EU, US])
    try:
        keys = {name: world.key(name) for name in "abc"}
        start = len(world.stores[EU].stream)
        for name, stamp in (("a", 1), ("b", 2), ("b", None), ("c", 4), ("b", 5)):
            if stamp is None:
                world.delete(EU, keys[name])
            else:
                world.put(EU, keys[name], **{FIELDS_TS: n(T + stamp), "content": n(stamp)})
        end = len(world.stores[EU].stream)
        records = [dict(r) for r in world.stores[EU].stream[start:end]]
        assert len(records) == 5
        seqs = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        replicator = world.replicators[EU]
        held = HeldThenDead(replicator.writers[US], seqs[0])
        replicator.writers[US] = held

        process = through(replicator)
        store, ref = FakeCheckpoints(), ShardRef(WORLD_TABLE, "arn:stream", "s1")
        dead_view = Fenced(store)  # type: ignore[arg-type]

        def worker(checkpoints: Any) -> ShardWorker:
            return ShardWorker(
                ref,
                source=SlowReads({"s1": records}),
                checkpoints=checkpoints,
                process=process,
                targets=[US],
                parent=None,
                clock=ManualClock(),
                page_limit=1,
            )

        dead = worker(dead_view)
        stepping = threading.Thread(target=dead.step, daemon=True)
        stepping.start()
        assert held.holding.wait(WAIT)
        began = time.monotonic()
        while len(held.done) < 4 and time.monotonic() - began < WAIT:
            time.sleep(0.002)
        assert sorted(held.done) == sorted(seqs[1:])  # the early pages wrote, page 1 hangs
        assert world.contents(keys["b"])[US] is not None  # the re-insert is there
        assert store.saved == {}
        dead_view.dead = True  # kill -9
        alive = worker(store)
        for _ in range(30):
            if store.saved.get(ref, {}).get(US) == seqs[-1]:
                break
            alive.clock.t += 60  # type: ignore[attr-defined]
            alive.step()
        alive.flush()
        held.dead = True
        held.gate.set()
        stepping.join(WAIT)
        assert store.saved[ref][US] == seqs[-1]
        world.read[EU] = end
        world.quiesce()
        for name in "abc":
            contents = world.contents(keys[name])
            assert contents[US] == contents[EU], name
        assert world.contents(keys["b"])[US] is not None
        assert world.violations == []
    finally:
        world.close()
