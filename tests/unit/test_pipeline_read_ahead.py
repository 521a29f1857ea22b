"""When a shard worker reads the next page (runner/shard_pages.py ``Pages._advance``): behind
(a page full to the limit it was read with, or cut short by GetRecords' 1 MB with records
seconds old) at once, while the page before it reads and writes; caught up,
``READ_CADENCE`` of a round trip after the last read (at once before any page settled).
An adversarial review's scenarios (splits, merges, expired iterators, shard end, added
and removed targets, parked records, flush, a seeded fuzz): nothing is skipped, nothing
is checkpointed past an unapplied record, no two pages that may share a key write to one
target at once."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import (
    DeadlineError,
    MissingTimestampError,
    ReplicatorError,
    ThrottledError,
    UnreachableError,
)
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult, RecordFailure
from dynamodb_replicator.core.streams import END, Page, ShardRef
from dynamodb_replicator.runner.pipeline import Flight
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .test_shardworker import ARN, TARGETS, FakeLot, FakeStream, record

REF = ShardRef("Orders", ARN, "s1")
WAIT = 10.0  # seconds: only a hang reaches it


def seq(r: Mapping[str, Any]) -> int:
    return int(r["dynamodb"]["SequenceNumber"])


@dataclass
class LoggedStream(FakeStream):
    """A FakeStream that notes every read (its iterator) and whether a page's writes were
    running at the time; ``cap`` caps a page below the limit (GetRecords' 1 MB)."""

    cap: int | None = None
    keys: int | None = None  # records of ``keys`` keys in turn (None: records without keys)
    reads: list[str] = field(default_factory=list)
    writing: set[int] = field(default_factory=set)  # first sequence of pages writing
    read_while_writing: list[int] = field(default_factory=list)
    reading: set[int] = field(default_factory=set)  # ... of pages in their reads (P0)
    read_while_reading: list[int] = field(default_factory=list)
    on_read: Callable[[str], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, iterator: str, limit: int = 1000) -> Page:
        with self.lock:
            self.reads.append(iterator)
            if self.writing:
                self.read_while_writing.extend(sorted(self.writing))
            if self.reading:
                self.read_while_reading.extend(sorted(self.reading))
        if self.on_read is not None:
            self.on_read(iterator)
        with self.lock:
            return super().read(iterator, min(limit, self.cap or limit))

    def append(self, n: int) -> None:
        with self.lock:
            self.shards["s1"].append(self.record(n))

    def record(self, n: int) -> dict[str, Any]:
        r = record(n)
        if self.keys is not None:
            r["dynamodb"]["Keys"] = {"pk": {"S": f"k{n % self.keys}"}}
        return r


def after_page_1_wrote(stream: LoggedStream, checking: Checking, at: str) -> None:
    """Caught up, the read ahead comes at once (no round trip known yet): hold the read
    at iterator ``at`` until page 1's writes (``checking.during``) ran, so that it sees
    what they did."""
    wrote, earlier = threading.Event(), checking.during

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if earlier is not None:
            earlier(records)
        if seq(records[0]) == 1:
            wrote.set()

    def held(iterator: str) -> None:
        if iterator == at:
            assert wrote.wait(WAIT)

    checking.during, stream.on_read = during, held


class Checking:
    """A checkpoint store and a Process: records applied per target (in order of their
    writes), each checkpoint checked against them, pages' writes checked never to
    overlap. A Process hook ``during`` runs while a page writes, ``reads`` before (while
    its reads would run, before ``ready``); ``fail`` decides a target's failure at a
    record. Pages' writes to one target may overlap only when their keys are known and
    disjoint."""

    def __init__(self, stream: LoggedStream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.applied: dict[str, list[int]] = {t: [] for t in TARGETS}
        self.saved: dict[str, str] = {}
        self.found: list[str] = []
        self.during: Callable[[Sequence[Mapping[str, Any]]], None] | None = None
        self.reads: Callable[[Sequence[Mapping[str, Any]]], None] | None = None
        self.fail: Callable[[str, int], ReplicatorError | None] | None = None
        # Pages from ready to written: (page, its keys, its targets), by a token.
        self.keys_writing: dict[object, tuple[int, set[str], set[str]]] = {}

    # the checkpoint store
    def load(self, shard: ShardRef) -> dict[str, str]:
        with self.lock:
            return dict(self.saved)

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        with self.lock:
            for target, position in positions.items():
                if position == END:
                    self.saved[target] = position
                    continue
                at = int(position)
                if self.saved.get(target) == END:
                    self.found.append(f"{target}: checkpoint after END")
                elif target in self.saved and at < int(self.saved[target]):
                    self.found.append(f"{target}: checkpoint moved back to {at}")
                done = set(self.applied[target])
                missing = [s for s in range(1, at + 1) if s not in done]
                if missing:
                    self.found.append(f"{target}: checkpoint {at} passes unapplied {missing}")
                self.saved[target] = position

    # the Process
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
        page = seq(records[0])
        keys = {str(r["dynamodb"].get("Keys")) for r in records}
        token = object()
        with self.lock:
            for other, theirs, where in self.keys_writing.values():
                if where & set(targets) and (keys & theirs or "None" in keys | theirs):
                    self.found.append(f"page {page}'s reads overlap page {other}'s writes")
        if self.reads is not None:
            with self.stream.lock:
                self.stream.reading.add(page)
            self.reads(records)
            with self.stream.lock:
                self.stream.reading.discard(page)
        if ready is not None:
            ready()
        with self.lock:
            for other, theirs, where in self.keys_writing.values():
                for target in sorted(where & set(targets)):
                    if keys & theirs or "None" in keys | theirs:
                        self.found.append(
                            f"page {page}'s writes overlap page {other}'s of a key to {target}"
                        )
            self.keys_writing[token] = (page, keys, set(targets))
        with self.stream.lock:
            self.stream.writing.add(page)
        if self.during is not None:
            self.during(records)
        results = {}
        for target in sorted(targets):
            failed, error = None, None
            for r in records:
                n = seq(r)
                err = self.fail(target, n) if self.fail is not None else None
                if err is not None:
                    failed, error = str(n), err
                    break
                with self.lock:
                    self.applied[target].append(n)
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        with self.stream.lock:
            self.stream.writing.discard(page)
        with self.lock:
            del self.keys_writing[token]
        if written is not None:
            written()
        return BatchResult(results)

    def last(self) -> int:
        return len(self.stream.shards["s1"])

    def caught_up(self, targets: Collection[str] = tuple(TARGETS)) -> bool:
        return all(self.saved.get(t) == f"{self.last():021d}" for t in targets)


def make(
    n: int,
    *,
    limit: int = 3,
    cap: int | None = None,
    targets: Sequence[str] = TARGETS,
    keys: int | None = None,
) -> tuple[ShardWorker, LoggedStream, Checking]:
    stream = LoggedStream({"s1": []}, cap=cap, keys=keys)
    stream.shards["s1"] = [stream.record(i) for i in range(1, n + 1)]
    checking = Checking(stream)
    w = ShardWorker(
        REF,
        source=stream,
        checkpoints=checking,
        process=checking,
        targets=targets,
        parent=None,
        clock=ManualClock(),
        page_limit=limit,
    )
    return w, stream, checking


def drain(w: ShardWorker, checking: Checking, steps: int = 200) -> None:
    for _ in range(steps):
        every = (*w.targets, *w._joining)  # one added but not taken up yet too
        if checking.caught_up(every) and not any(c.inflight for c in w.cursors):
            break
        w.clock.t += 60  # type: ignore[attr-defined]
        with contextlib.suppress(ReplicatorError):
            w.step()
    w.flush()


# -- caught up: what arrives while a page writes goes out next, once -------------------
def test_review_caught_up_pages_with_arrivals_during_writes_apply_each_record_once() -> None:
    """Every page short; records arrive during each page's writes: every record reaches
    every target exactly once, in order; on a clock that lets no time go by, no step makes
    more than one read ahead that finds nothing (no spin)."""
    w, stream, checking = make(2, limit=5)
    empty: list[int] = []  # the step of each read that found nothing
    steps = [0]
    read = stream.read

    def counted(iterator: str, limit: int = 1000) -> Page:
        page = read(iterator, limit)
        if not page.records:
            empty.append(steps[0])
        return page

    stream.read = counted  # type: ignore[method-assign]
    arrived = [2]

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if arrived[0] < 40:
            for _ in range(2):
                arrived[0] += 1
                stream.append(arrived[0])

    checking.during = during
    for steps[0] in range(200):
        if checking.caught_up() and not any(c.inflight for c in w.cursors):
            break
        w.clock.t += 60  # type: ignore[attr-defined]
        w.step()
    w.flush()
    assert checking.found == []
    assert checking.caught_up()
    for target in TARGETS:
        assert checking.applied[target] == list(range(1, 41))
    assert empty and all(empty.count(step) == 1 for step in empty)


def test_review_a_target_failing_on_a_caught_up_page_replays_from_its_checkpoint() -> None:
    """A target fails in a short page whose follower (read after the writes) was already
    launched to every target: the follower is finished, the target splits off, nothing is
    skipped and no checkpoint passes what it did not apply."""
    w, stream, checking = make(2, limit=5)
    arrived = [2]
    failed_once = {"us-east-1": False}

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if arrived[0] < 20:
            arrived[0] += 1
            stream.append(arrived[0])

    def fail(target: str, n: int) -> ReplicatorError | None:
        if target == "us-east-1" and n == 4 and not failed_once[target]:
            failed_once[target] = True
            return UnreachableError("down")
        return None

    checking.during, checking.fail = during, fail
    drain(w, checking)
    assert checking.found == []
    assert checking.caught_up() and len(w.cursors) == 1
    for target in TARGETS:
        assert sorted(set(checking.applied[target])) == list(range(1, 21))
    # Only the failed target replays, and only from the record it failed at.
    assert checking.applied["eu-west-1"] == list(range(1, 21))
    assert checking.applied["ap-southeast-1"] == list(range(1, 21))


def test_review_an_iterator_expired_on_the_read_after_the_writes_rereads_the_rest() -> None:
    """The read after a short page's writes finds its iterator expired: the page settles,
    the next step takes a new iterator at its checkpoint; nothing skipped or repeated."""
    w, stream, checking = make(2, limit=5)

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq(records[0]) == 1:
            stream.append(3)
            stream.expire_next = 1  # the next read: the one after these writes

    checking.during = during
    after_page_1_wrote(stream, checking, "s1:2")
    w.step()
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None
    assert checking.saved == dict.fromkeys(TARGETS, f"{2:021d}")
    drain(w, checking)
    assert checking.found == [] and checking.caught_up()
    for target in TARGETS:
        assert checking.applied[target] == [1, 2, 3]
    assert stream.iterators_taken[-1] == ("s1", f"{2:021d}")


def test_review_a_closed_shards_short_last_page_reads_nothing_more_and_ends() -> None:
    w, stream, checking = make(2, limit=5)
    stream.closed.add("s1")
    w.step()
    assert len(stream.reads) == 1  # next_iterator None: nothing read after the writes
    assert checking.saved == dict.fromkeys(TARGETS, END) and w.done
    assert checking.found == []


def test_review_a_short_page_then_an_empty_read_leaves_no_page_in_flight() -> None:
    w, stream, checking = make(2, limit=5)
    w.step()
    (cursor,) = w.cursors
    assert len(stream.reads) == 2 and cursor.inflight == ()
    assert cursor.iterator == "s1:2" and checking.saved == dict.fromkeys(TARGETS, f"{2:021d}")
    stream.append(3)
    w.step()
    assert checking.saved == dict.fromkeys(TARGETS, f"{3:021d}") and checking.found == []


def test_review_a_target_removed_during_a_short_pages_writes_gets_nothing_after() -> None:
    w, stream, checking = make(2, limit=5)
    gone = "ap-southeast-1"

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq(records[0]) == 1 and len(stream.shards["s1"]) == 2:  # the first page only
            stream.append(3)
            w.remove_targets([gone])  # a reload, from another thread, while it writes

    checking.during = during
    w.step()  # page 1-2 settles for all; 3 read after the writes, launched to all
    w.step()  # takes the removal: the cursor keeps 3 in flight for the others
    before = list(checking.applied[gone])
    saved_before = checking.saved.get(gone)
    for n in range(4, 8):
        stream.append(n)
    drain(w, checking)
    assert checking.applied[gone] == before and checking.saved.get(gone) == saved_before
    assert checking.caught_up(["eu-west-1", "us-east-1"]) and checking.found == []


def test_review_a_target_added_during_a_short_pages_writes_catches_up() -> None:
    w, stream, checking = make(2, limit=5, targets=TARGETS[:2])
    new = TARGETS[2]

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq(records[0]) == 1 and len(stream.shards["s1"]) == 2:  # the first page only
            stream.append(3)
            w.add_targets([new])

    checking.during = during
    drain(w, checking)
    assert checking.caught_up() and checking.found == [] and len(w.cursors) == 1
    assert checking.applied[new] == [1, 2, 3]


# -- parked records ----------------------------------------------------------------------
class PoisonAt(Checking):
    """Checking whose record ``bad`` fails by itself (no ``__timestamp``), for every target:
    parked after ``park_after``; the other records of its page are applied."""

    bad = 3

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
        if ready is not None:
            ready()
        if self.during is not None:
            self.during(records)
        seqs = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        bad = [s for s in seqs if int(s) == self.bad]
        failures = tuple(RecordFailure(s, MissingTimestampError("no __timestamp")) for s in bad)
        done = {s: True for s in seqs if s not in bad}
        with self.lock:
            for target in targets:
                self.applied[target].extend(int(s) for s in done)
        if written is not None:
            written()
        return BatchResult(
            {t: TargetResult(t, applied=len(done), settled=done) for t in targets}, failures
        )


def test_review_a_short_page_of_parked_records_only_reads_on_after_it() -> None:
    """Record 3 fails by itself and is parked; the replay of a short page holding only it
    is done at once (``Flight.done``) and the page after it, read then, goes out; no
    checkpoint passes a record that was neither applied nor parked."""
    stream = LoggedStream({"s1": [record(i) for i in range(1, 4)]})
    checking = PoisonAt(stream)
    lot, clock = FakeLot(), ManualClock()
    w = ShardWorker(
        REF,
        source=stream,
        checkpoints=checking,
        process=checking,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=10,
        parking=lot,
        park_after=100.0,
        region="eu-west-1",
    )
    for _ in range(10):
        clock.t += 60
        w.step()
        if lot.parked_records:
            break
    assert [p.sequence for p in lot.parked_records] == [f"{3:021d}"]
    done = []
    real = Flight.done.__func__  # type: ignore[attr-defined]

    def noted(
        cls: type[Flight], /, page: Page, targets: Any, result: BatchResult, **kw: Any
    ) -> Flight:
        done.append([seq(r) for r in page.records])
        flight: Flight = real(cls, page, targets, result, **kw)
        return flight

    Flight.done = classmethod(noted)  # type: ignore[method-assign,assignment]
    try:
        clock.t += 60
        w.step()  # the replay of [3]: nothing left to apply
    finally:
        Flight.done = classmethod(real)  # type: ignore[method-assign,assignment]
    for n in range(4, 7):
        stream.append(n)
    drain(w, checking)
    for target in TARGETS:
        assert sorted(set(checking.applied[target])) == [1, 2, 4, 5, 6]
    assert checking.saved == dict.fromkeys(TARGETS, f"{6:021d}")
    # found: a checkpoint past 3 (parked, never applied) is right here; only 4-6 matter.
    assert all("[3]" in f for f in checking.found)
    assert done == [[3]]  # the page of parked records only was met


# -- flush / stop --------------------------------------------------------------------
def test_review_flush_after_a_caught_up_step_settles_the_page_read_ahead() -> None:
    """A stop comes while a short page writes: the step still reads ahead and starts the
    next page; the shard thread's flush then settles it before it returns."""
    w, stream, checking = make(2, limit=5)

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if seq(records[0]) == 1:
            stream.append(3)

    checking.during = during
    after_page_1_wrote(stream, checking, "s1:2")
    w.step()
    (cursor,) = w.cursors
    assert [[seq(r) for r in f.records] for f in cursor.inflight] == [[3]]
    w.flush()
    assert cursor.inflight == () and checking.saved == dict.fromkeys(TARGETS, f"{3:021d}")
    assert checking.found == []


# -- the page size changing between a page's read and the comparison -----------------
def held_read(
    w: ShardWorker,
    stream: LoggedStream,
    checking: Checking,
    page: int,
    before: int = 0,
    *,
    reads: bool = False,
) -> bool:
    """Page ``page``'s writes held (with ``reads``: its reads): ``before`` steps, then one
    more on a thread of its own; whether a read ran while they were held."""
    hold, seen = threading.Event(), threading.Event()
    earlier = checking.reads if reads else checking.during
    ran = stream.read_while_reading if reads else stream.read_while_writing

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        if earlier is not None:
            earlier(records)
        if seq(records[0]) == page:
            seen.set()
            hold.wait(WAIT)

    if reads:
        checking.reads = during
    else:
        checking.during = during
    stepping = threading.Thread(target=w.step)
    try:
        for _ in range(before):
            w.clock.t += 60  # type: ignore[attr-defined]
            w.step()
        w.clock.t += 60  # type: ignore[attr-defined]
        stepping.start()
        assert seen.wait(WAIT)
        began = time.monotonic()
        while page not in ran and time.monotonic() - began < 1.0:
            time.sleep(0.005)  # bounded wait for a read ahead
        return page in ran
    finally:
        hold.set()
        if stepping.is_alive():
            stepping.join(WAIT)
        if reads:
            checking.reads = earlier
        else:
            checking.during = earlier


def test_review_a_halved_limit_never_judges_a_follower_still_writing() -> None:
    """The limit halves only when a page ran out of time, a failure: its follower is then
    finished (``finish_quietly``) in the same step, so the comparison of the follower with
    the halved limit in the next step finds its writes done either way. Nothing skipped,
    no checkpoint past a gap."""
    w, stream, checking = make(7, limit=4)
    late = {"left": 1}

    def fail(target: str, n: int) -> ReplicatorError | None:
        if target == "us-east-1" and n == 4 and late["left"]:
            late["left"] -= 1
            return DeadlineError("no time left to start this write")
        return None

    checking.fail = fail
    w.step()  # 1-4 settle (us-east-1 splits off at 3), limit 2; 5-7 in flight, finished
    main = next(c for c in w.cursors if "eu-west-1" in c.targets)
    assert main.size.limit == 2
    (follower,) = main.inflight
    assert len(follower.records) == 3 and follower._written.is_set()
    assert follower._result.done()
    for n in range(8, 11):
        stream.append(n)
    drain(w, checking)
    assert checking.found == [] and checking.caught_up()
    for target in TARGETS:
        assert sorted(set(checking.applied[target])) == list(range(1, 11))


def test_review_a_full_page_read_before_the_limit_doubled_is_still_read_ahead() -> None:
    w, stream, checking = make(12, limit=4)
    (cursor,) = w.cursors
    cursor.size.limit = 2  # halved earlier; one calm page more doubles it back
    cursor.size._in_time = cursor.size.calm - 1
    # Step 1: 1-2 (full at 2) settle, the limit doubles to 4; 3-4 (full at 2) in flight,
    # held; step 2 compares 3-4 with 4. A backlog: the next page read while 3-4 write.
    assert held_read(w, stream, checking, 3, before=1)


def test_review_a_backlog_of_byte_capped_pages_is_read_ahead() -> None:
    """Pages cut short by GetRecords' 1 MB in a backlog (their records seconds old) are
    read ahead like full ones."""
    w, stream, checking = make(12, limit=5, cap=3)  # every page 3 records: capped, not caught up
    for r in stream.shards["s1"]:
        r["dynamodb"]["ApproximateCreationDateTime"] = w.clock.now() - 10
    assert held_read(w, stream, checking, 1, reads=True)


def test_review_short_pages_of_fresh_records_before_a_round_trip_is_known_are_read_at_once() -> (
    None
):
    """Short pages whose records are younger than ``BEHIND_SECONDS``: the shard is caught
    up, and no page settled yet (no round trip known, a read cadence of nothing): the next
    page is read at once, while the page's reads run as while its writes do (the cadence
    of a known round trip: test_pipeline_overlapping_reads.py)."""
    w, stream, checking = make(12, limit=5, cap=3)
    for r in stream.shards["s1"]:
        r["dynamodb"]["ApproximateCreationDateTime"] = w.clock.now() + 60 - 1  # as read
    assert w._trip_s == 0.0
    assert held_read(w, stream, checking, 1, reads=True)
    w, stream, checking = make(12, limit=5, cap=3)
    for r in stream.shards["s1"]:
        r["dynamodb"]["ApproximateCreationDateTime"] = w.clock.now() + 60 - 1
    assert held_read(w, stream, checking, 1)


# -- a seeded concurrent fuzz ----------------------------------------------------------
def fuzz(seed: int) -> list[str]:
    rng = random.Random(seed)
    limit = rng.choice([1, 2, 3, 5, 8])
    cap, keys = rng.choice([None, None, 2]), rng.choice([None, 2, 7, 1000])
    w, stream, checking = make(rng.randint(1, 10), limit=limit, cap=cap, keys=keys)
    lock = threading.Lock()
    state = {"n": len(stream.shards["s1"]), "removed": False}
    throttle = dict.fromkeys(TARGETS, 0.0)
    total = rng.randint(20, 80)

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        with lock:
            if state["n"] < total and rng.random() < 0.6:
                for _ in range(rng.randint(1, 4)):
                    state["n"] += 1
                    stream.append(state["n"])
            if rng.random() < 0.1:
                stream.expire_next = 1
            sleep = rng.choice([0.0, 0.0, 0.001])
        time.sleep(sleep)

    def fail(target: str, n: int) -> ReplicatorError | None:
        with lock:
            roll = rng.random()
            if roll < throttle[target]:
                return ThrottledError("throttled")
            if roll < throttle[target] + 0.02:
                return DeadlineError("no time left")
        return None

    checking.during, checking.fail = during, fail
    for _ in range(150):
        with lock:
            roll, target = rng.random(), rng.choice(TARGETS)
            if roll < 0.1:
                throttle[target] = rng.choice([0.0, 0.05, 0.3])
            elif roll < 0.13:
                last = TARGETS[-1]
                (w.add_targets if state["removed"] else w.remove_targets)([last])
                state["removed"] = not state["removed"]
            elif roll < 0.3 and state["n"] < total:
                state["n"] += 1
                stream.append(state["n"])
        w.clock.t += rng.choice([0.1, 1.0, 10.0])  # type: ignore[attr-defined]
        with contextlib.suppress(ReplicatorError):
            w.step()
    with lock:
        for t in TARGETS:
            throttle[t] = 0.0
        if state["removed"]:
            w.add_targets([TARGETS[-1]])
        state["n"] = total = max(total, state["n"])
    checking.fail = None
    checking.during = None
    stream.expire_next = 0
    drain(w, checking, steps=3000)
    found = [f"seed {seed}: {f}" for f in checking.found]
    if not checking.caught_up():
        found.append(f"seed {seed}: not caught up with {checking.last()}: {checking.saved}")
    return found


def test_review_seeded_concurrent_fuzz_of_short_and_full_pages() -> None:
    began, found = time.monotonic(), []
    for seed in range(200):
        found += fuzz(seed)
        if time.monotonic() - began > 20:
            break
    assert found == []


def test_review_an_unexpected_error_on_the_read_after_a_short_pages_writes() -> None:
    """The read after a short page's writes raises an unexpected error: the page ends
    before the error comes out, nothing is checkpointed past it, and the next step reads
    again from the checkpoint (the page is replayed, as before the change)."""
    w, stream, checking = make(2, limit=5)

    def broken(iterator: str) -> None:
        if iterator == "s1:2":
            raise RuntimeError("unexpected")

    stream.on_read = broken
    with pytest.raises(RuntimeError, match="unexpected"):
        w.step()
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None and checking.saved == {}
    assert all(checking.applied[t] == [1, 2] for t in TARGETS)
    stream.on_read = None
    drain(w, checking)
    assert checking.found == [] and checking.caught_up()
