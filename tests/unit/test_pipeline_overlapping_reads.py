"""Up to ``defaults.PAGES_IN_FLIGHT`` pages of a cursor in flight, the oldest settling. A
page that shares no key with a page before it still writing goes ahead whole: its reads
(source tombstones, plan, the targets' tombstone reads) and its writes overlap those
writes; a page sharing a key waits, reads and writes, for them; a stop starts no write of
a page read ahead. Caught up, the next read comes ``READ_CADENCE`` of a round trip after
the last."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.pipeline import page_keys
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .fakes import FixedTombstones, RecordingWriter
from .test_pipeline import WAIT, Journal, first, saved
from .test_pipeline_read_ahead import LoggedStream
from .test_retry_waits_on_the_clock import RecordingClock
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, record


def keyed(seq: int, key: str) -> dict[str, Any]:
    """A stream record of ``key`` (the pipeline compares pages by their keys)."""
    r = record(seq)
    r["dynamodb"]["Keys"] = {"pk": {"S": key}}
    return r


def worker(
    journal: Journal, stream: FakeStream, checkpoints: FakeCheckpoints, **kwargs: Any
) -> ShardWorker:
    return ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=journal,
        targets=TARGETS,
        parent=None,
        page_limit=3,
        **{"clock": ManualClock(), **kwargs},
    )


def not_within(journal: Journal, event: str, seconds: float = 0.3) -> bool:
    """A bounded wait for what must not happen: True when ``event`` did not come."""
    with journal.changed:
        return not journal.changed.wait_for(lambda: event in journal.events, seconds)


def wait_reads(stream: LoggedStream, count: int) -> None:
    began = time.monotonic()
    while len(stream.reads) < count and time.monotonic() - began < WAIT:
        time.sleep(0.001)  # polls for the read ahead, bounded by WAIT
    assert len(stream.reads) >= count, stream.reads


class AdvancingClock(RecordingClock):
    """A RecordingClock whose waits, once ``advancing``, let the time they ask for go by
    (simulated: at once) unless ``stop`` is set."""

    advancing = False

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if super().wait(seconds, stop):
            return True
        if self.advancing:
            self.t += seconds
        return stop is not None and stop.is_set()


def test_a_page_of_other_keys_reads_and_writes_while_the_page_before_still_writes() -> None:
    stream = FakeStream({"s1": [keyed(i, f"k{i}") for i in range(1, 7)]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 1")
    journal.wait_for("written 4")  # page 4's reads and writes, while page 1 still writes
    assert "written 1" not in journal.events and saved(checkpoints) == set()
    assert journal.events.index("writes 1") < journal.events.index("start 4")
    go.set()
    stepping.join(WAIT)
    assert saved(checkpoints) == {f"{3:021d}"}  # settled in stream order all the same
    w.step()
    assert saved(checkpoints) == {f"{6:021d}"}


def test_a_page_sharing_a_key_with_a_page_writing_reads_and_writes_only_after_its_writes() -> None:
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c"), keyed(4, "c"), keyed(5, "d")]
    stream = LoggedStream({"s1": records})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 1")
    wait_reads(stream, 2)  # page 4 was read while page 1 writes
    assert "written 1" not in journal.events
    assert not_within(journal, "start 4")  # its reads would not see page 1's writes of c
    assert "writes 4" not in journal.events  # nor may its writes of c overtake them
    go.set()
    stepping.join(WAIT)
    journal.wait_for("written 4")
    assert journal.events.index("written 1") < journal.events.index("start 4")
    assert journal.events.index("start 4") < journal.events.index("writes 4")


def test_up_to_five_pages_are_in_flight_settling_writing_and_reading_never_more() -> None:
    """Pages of keys of their own, page 1 held settling, page 4 held writing, page 7 held
    reading: pages 10 and 13 go ahead beside them; no sixth page is read."""
    assert defaults.PAGES_IN_FLIGHT == 5
    stream = LoggedStream({"s1": [keyed(i, f"k{i}") for i in range(1, 19)]})
    checkpoints = FakeCheckpoints()
    settle_1, write_4, read_7 = threading.Event(), threading.Event(), threading.Event()
    journal = Journal(held={1: settle_1}, before_written={4: write_4}, before_ready={7: read_7})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 4")
    journal.wait_for("start 7")
    journal.wait_for("end 10")
    journal.wait_for("end 13")
    # The state the test is about: page 1 settles, page 4 writes, page 7 reads, pages 10
    # and 13 are done but not settled: five in flight, and no read of a sixth.
    assert "written 1" in journal.events and "end 1" not in journal.events
    assert "written 4" not in journal.events and "writes 7" not in journal.events
    assert saved(checkpoints) == set()
    assert not_within(journal, "start 16")
    assert len(stream.reads) == defaults.PAGES_IN_FLIGHT
    settle_1.set()
    stepping.join(WAIT)
    assert saved(checkpoints) == {f"{3:021d}"}  # page 1 only, in order
    (cursor,) = w.cursors
    assert [first(f.records) for f in cursor.inflight] == [4, 7, 10, 13]
    write_4.set()
    read_7.set()
    settled = []
    for _ in range(5):
        w.step()
        assert len(cursor.inflight) < defaults.PAGES_IN_FLIGHT
        settled.append(saved(checkpoints))
    # One page settles a step, in stream order, though pages 10 and 13 ended first.
    assert settled == [{f"{n:021d}"} for n in (6, 9, 12, 15, 18)]
    assert journal.events.index("end 10") < journal.events.index("end 4")


def test_a_stop_starts_no_write_of_a_page_read_ahead() -> None:
    stream = FakeStream({"s1": [keyed(i, f"k{i}") for i in range(1, 7)]})
    checkpoints, go, stop = FakeCheckpoints(), threading.Event(), threading.Event()
    reads_4 = threading.Event()
    journal = Journal(before_written={1: go}, before_ready={4: reads_4})
    w = worker(journal, stream, checkpoints, stop=stop)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("start 4")  # read ahead, its reads under way while page 1 writes
    assert "writes 4" not in journal.events
    stop.set()
    reads_4.set()  # its writes would start now, beside page 1's (other keys)
    go.set()
    stepping.join(WAIT)
    w.flush()
    assert "writes 4" not in journal.events  # it never wrote: replayed from checkpoint 3
    assert saved(checkpoints) == {f"{3:021d}"}
    (cursor,) = w.cursors
    assert cursor.inflight == () and cursor.iterator is None


def test_a_page_with_a_record_without_keys_shares_every_key() -> None:
    assert page_keys([keyed(1, "a"), record(2)]) is None
    keys = page_keys([keyed(1, "a"), keyed(2, "a")])
    assert keys is not None and len(keys) == 1


def test_a_page_waiting_for_the_page_before_holds_no_thread_of_the_replicators_pool() -> None:
    """More pages at once than the replicator's pool has threads each wait in ``ready``
    (for the page before theirs) until all of them got there: ``ready`` runs in the page's
    own thread, once a region, after that region's reads. (Called by each region's
    writer in the pool, a full pool left the batches of the page waited for queued
    behind batches that waited for it: a deadlock under load.)"""
    fields = SystemAttributes()
    writers = {r: RecordingWriter(r) for r in TARGETS}
    replicator = Replicator(
        source=TARGETS[0],
        writers=writers,
        tombstones=FixedTombstones(),
        policy=LastWriterWins(fields),
        fields=fields,
    )
    pages = defaults.PAGES_IN_FLIGHT * len(TARGETS) + 1  # one more than the pool's threads
    everyone = threading.Barrier(pages, timeout=5)
    results: list[bool] = []
    waited_in: list[bool] = []

    def page() -> None:
        def ready() -> None:
            waited_in.append(threading.current_thread() is mine)
            everyone.wait()

        mine = threading.current_thread()
        result = replicator.process("T", [], from_json=True, ready=ready)
        results.append(result.failed_sequence() is None)

    threads = [threading.Thread(target=page) for _ in range(pages)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    replicator.close()
    assert results == [True] * pages and not everyone.broken
    assert waited_in == [True] * (pages * len(TARGETS))


def test_caught_up_the_next_read_comes_a_read_cadence_of_the_round_trip_after_the_last() -> None:
    """Pages whose reads take nothing (updates: a put where the item is present) and
    whose writes take 5 s: the round trip is the writes' 5 s, and caught up each read comes
    ``READ_CADENCE`` of it after the one before (not at once, not once the page in flight
    is written), whether the last read found records or not."""
    stream = LoggedStream({"s1": [keyed(1, "k1"), keyed(2, "k2")]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    clock = AdvancingClock()

    def writing_takes_a_while() -> None:
        clock.t += 5.0

    journal = Journal(before_written={3: go}, while_writing=writing_takes_a_while)
    w = worker(journal, stream, checkpoints, clock=clock)
    w.step()  # page 1 (short: caught up), its writes timed at 5 s, settled
    assert saved(checkpoints) == {f"{2:021d}"}
    assert w._trip_s == 5.0
    journal.while_writing = None
    clock.advancing = True
    read_at: list[float] = []

    def timed(iterator: str) -> None:
        read_at.append(clock.elapsed())
        if len(read_at) == 2:
            stream.append(4)  # the first read ahead finds page 4
            stream.shards["s1"][-1]["dynamodb"]["Keys"] = {"pk": {"S": "k4"}}
        elif len(read_at) == 3:
            go.set()  # the next finds nothing: page 3 may end

    stream.append(3)
    stream.shards["s1"][-1]["dynamodb"]["Keys"] = {"pk": {"S": "k3"}}
    stream.on_read = timed
    waits = len(clock.waits)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    stepping.join(WAIT)
    assert not stepping.is_alive()
    assert len(read_at) >= 3  # page 3, page 4 read ahead, an empty read ahead
    gap = defaults.READ_CADENCE * 5.0
    assert [round(b - a, 6) for a, b in itertools.pairwise(read_at)] == [gap] * (len(read_at) - 1)
    assert clock.waits[waits : waits + 2] == [gap, gap]
    (cursor,) = w.cursors
    assert [first(f.records) for f in cursor.inflight] == [4]
