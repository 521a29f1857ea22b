"""Pages in flight: the shard worker starts a page's writes while the page before it
settles; a page that may share a key with a page before it (here: records without keys)
starts only once that page's writes are done; pages settle (count, checkpoint) strictly in
stream order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.streams import Page, ShardRef
from dynamodb_replicator.runner.pipeline import Flight
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .fakes import FixedTombstones, RecordingWriter
from .test_pipeline_read_ahead import LoggedStream
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, record
from .test_writes import HERE, TABLE, TOMBS, put, writer

WAIT = 10.0  # seconds: only a hang reaches it


def first(records: Sequence[Mapping[str, Any]]) -> int:
    return int(records[0]["dynamodb"]["SequenceNumber"])


@dataclass
class Journal:
    """A Process that notes when each page starts, says its writes are done and ends;
    a page in ``held`` does not end (settle) until released."""

    events: list[str] = field(default_factory=list)
    held: dict[int, threading.Event] = field(default_factory=dict)
    fail_once: dict[int, str] = field(default_factory=dict)  # page -> target failing once
    before_written: dict[int, threading.Event] = field(default_factory=dict)
    before_ready: dict[int, threading.Event] = field(default_factory=dict)  # its reads
    while_writing: Callable[[], None] | None = None  # between "writes N" and "written N"
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def note(self, event: str) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, event: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: event in self.events, WAIT), self.events

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
        page = first(records)
        self.note(f"start {page}")
        reads = self.before_ready.get(page)
        if reads is not None:
            assert reads.wait(WAIT)
        if ready is not None:
            ready()
        self.note(f"writes {page}")
        if self.while_writing is not None:
            self.while_writing()
        gate = self.before_written.get(page)
        if gate is not None:
            assert gate.wait(WAIT)
        self.note(f"written {page}")
        if written is not None:
            written()
        held = self.held.get(page)
        if held is not None:
            assert held.wait(WAIT)
        failing = self.fail_once.pop(page, None)
        results = {}
        for target in targets:
            failed = str(records[0]["dynamodb"]["SequenceNumber"]) if target == failing else None
            error = UnreachableError("down") if failed else None
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        self.note(f"end {page}")
        return BatchResult(results)


def worker(journal: Journal, stream: FakeStream, checkpoints: FakeCheckpoints) -> ShardWorker:
    return ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=journal,
        targets=TARGETS,
        parent=None,
        clock=ManualClock(),
        page_limit=3,
    )


def saved(checkpoints: FakeCheckpoints) -> set[str]:
    return set(checkpoints.saved.get(ShardRef("Orders", ARN, "s1"), {}).values())


def test_the_next_page_is_written_while_a_page_settles() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 10)]})
    checkpoints, release = FakeCheckpoints(), threading.Event()
    journal = Journal(held={1: release})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    # Page 4's writes start while page 1 still settles, and nothing is checkpointed yet.
    journal.wait_for("start 4")
    assert "end 1" not in journal.events
    assert saved(checkpoints) == set()
    release.set()
    stepping.join(WAIT)
    assert saved(checkpoints) == {f"{3:021d}"}  # page 1, in order; pages 4 and 7 in flight
    (cursor,) = w.cursors
    assert [first(f.records) for f in cursor.inflight] == [4, 7]
    w.step()
    w.step()
    assert saved(checkpoints) == {f"{9:021d}"}
    assert journal.events.index("written 1") < journal.events.index("start 4")


def test_a_page_of_unknown_keys_starts_only_after_the_writes_before_it() -> None:
    """Records without keys: the page may share any key with page 1 (writing), so it
    waits, reads and writes, for page 1's writes."""
    stream = FakeStream({"s1": [record(i) for i in range(1, 7)]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("start 1")
    # Page 4 must not start while page 1 is still writing: give a wrong worker the time to
    # start it (a bounded wait for what must not happen), then let page 1's writes end.
    with journal.changed:
        journal.changed.wait_for(lambda: "start 4" in journal.events, 0.5)
    go.set()
    stepping.join(WAIT)
    journal.wait_for("start 4")
    assert journal.events.index("written 1") < journal.events.index("start 4")


def test_a_failure_lets_the_page_read_ahead_finish_before_anything_retries() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 10)]})
    checkpoints = FakeCheckpoints()
    journal = Journal(fail_once={1: "ap-southeast-1"})
    w = worker(journal, stream, checkpoints)
    w.step()
    # Page 4 was applied (to every target, ap-southeast-1 included) and has ended; the
    # failed target waits at its own cursor, from before page 1.
    assert "end 4" in journal.events
    ap = [c for c in w.cursors if "ap-southeast-1" in c.targets]
    assert len(ap) == 1 and ap[0].position is None and ap[0].inflight == ()
    for _ in range(10):
        w.clock.t += 60  # type: ignore[attr-defined]
        w.step()
    assert saved(checkpoints) == {f"{9:021d}"}
    assert len(w.cursors) == 1


def test_flush_settles_the_page_in_flight() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 7)]})
    checkpoints = FakeCheckpoints()
    w = worker(Journal(), stream, checkpoints)
    w.step()
    assert saved(checkpoints) == {f"{3:021d}"}
    w.flush()
    assert saved(checkpoints) == {f"{6:021d}"}
    assert all(c.inflight == () for c in w.cursors)


def test_a_read_ahead_that_fails_reads_again_after_the_last_page_read() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 19)]})
    checkpoints = FakeCheckpoints()
    w = worker(Journal(), stream, checkpoints)
    w.step()  # settles 1-3; 4-6, 7-9, 10-12 and 13-15 in flight (five pages in all)
    (cursor,) = w.cursors
    assert [first(f.records) for f in cursor.inflight] == [4, 7, 10, 13]
    stream.expire_next = 1  # the read ahead of 16-18 fails
    w.step()  # settles 4-6
    assert saved(checkpoints) == {f"{6:021d}"}
    assert [first(f.records) for f in cursor.inflight] == [7, 10, 13]
    assert cursor.iterator is None
    w.step()  # a new iterator after 15 (the last page in flight), 16-18 read; 7-9 settle
    assert stream.iterators_taken[-1] == ("s1", f"{15:021d}")
    for _ in range(4):
        w.step()
    assert saved(checkpoints) == {f"{18:021d}"}


def test_the_writer_says_written_between_its_writes_and_its_settling_reads() -> None:
    store = MemoryStore(HERE)
    w = writer(store)
    w.apply(TABLE, [put("3"), put("4", seq="2")], written=lambda: store.calls.append("written"))
    w.close()
    assert store.calls == [
        f"get {TOMBS}",
        f"put {TABLE}",
        f"put {TABLE}",
        "written",
        f"get {TOMBS}",
    ]


def test_process_says_written_once_even_when_nothing_is_written() -> None:
    fields = SystemAttributes()
    writers = {r: RecordingWriter(r) for r in TARGETS}
    replicator = Replicator(
        source=TARGETS[0],
        writers=writers,
        tombstones=FixedTombstones(),
        policy=LastWriterWins(fields),
        fields=fields,
    )
    told: list[int] = []
    replicator.process("T", [], from_json=True, written=lambda: told.append(1))
    assert told == [1]
    bad = [{"eventName": "INSERT", "dynamodb": {"SequenceNumber": "5"}}]
    result = replicator.process("T", bad, from_json=True, written=lambda: told.append(2))
    replicator.close()
    assert told == [1, 2] and result.failed_sequence() == "5"
    assert not any(isinstance(op, PutVersion) for w in writers.values() for op in w.received)


def test_a_page_of_parked_records_only_is_done_at_once() -> None:
    page = Page([record(1)], None)
    flight = Flight.done(page, {"a"}, BatchResult({"a": TargetResult("a")}))
    assert flight.ended
    assert flight.result().targets["a"].failed_sequence is None


class BrokenReadAhead(FakeStream):
    """The second read (the read ahead) raises an unexpected error, and only then lets
    page 1's writes end."""

    go: threading.Event | None = None

    def read(self, iterator: str, limit: int = 1000) -> Page:
        if iterator.endswith(":3") and self.go is not None:
            self.go.set()
            raise RuntimeError("unexpected")
        return super().read(iterator, limit)


def test_an_unexpected_error_waits_for_the_page_in_flight() -> None:
    go = threading.Event()
    stream = BrokenReadAhead({"s1": [record(i) for i in range(1, 7)]})
    stream.go = go
    checkpoints = FakeCheckpoints()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    with pytest.raises(RuntimeError, match="unexpected"):
        w.step()
    # Page 1 ended before the error came out: none of its writes runs on unseen.
    assert "end 1" in journal.events
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None and saved(checkpoints) == set()


def test_caught_up_on_a_clock_that_stands_still_an_empty_read_ahead_is_made_once_a_step() -> None:
    """A page short of the limit (caught up), no round trip known yet: the next page is
    read at once, while page 1 is in flight, and finds nothing. On a clock that lets no
    time go by (``ManualClock``) the look again ``LOOK_AGAIN_S`` later would spin: the
    step settles page 1 instead, one empty read ahead made; what arrived meanwhile goes out
    in the next step."""
    stream = LoggedStream({"s1": [record(1), record(2)]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 1")
    began = time.monotonic()
    while len(stream.reads) < 2 and time.monotonic() - began < WAIT:
        time.sleep(0.001)  # polls for the read ahead, bounded by WAIT
    assert stream.reads == ["s1:0", "s1:2"] and "written 1" not in journal.events
    began = time.monotonic()
    while len(stream.reads) == 2 and time.monotonic() - began < 0.3:
        time.sleep(0.005)  # a bounded wait for a read that must not come (a spin)
    assert len(stream.reads) == 2
    stream.shards["s1"].extend([record(3), record(4)])
    go.set()
    stepping.join(WAIT)
    assert not stepping.is_alive() and len(stream.reads) == 2
    (cursor,) = w.cursors
    assert cursor.inflight == () and saved(checkpoints) == {f"{2:021d}"}
    w.step()  # 3-4 read and started, one empty read ahead; 3-4 settle
    assert stream.reads[2:] == ["s1:2", "s1:4"] and saved(checkpoints) == {f"{4:021d}"}
    for _ in range(3):
        w.step()  # nothing new: one read a step
    assert stream.reads[4:] == ["s1:4"] * 3


def test_behind_the_next_page_is_read_while_the_writes_run() -> None:
    """A full page (a backlog): the next one is read while its writes run."""
    stream = LoggedStream({"s1": [record(i) for i in range(1, 7)]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("start 1")
    began = time.monotonic()
    while len(stream.reads) < 2 and time.monotonic() - began < WAIT:
        time.sleep(0.001)  # polls for the read ahead, bounded by WAIT
    assert len(stream.reads) >= 2 and "written 1" not in journal.events
    go.set()
    stepping.join(WAIT)
    journal.wait_for("start 4")
    assert journal.events.index("written 1") < journal.events.index("start 4")
