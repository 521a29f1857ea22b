"""Three pages of a cursor in flight: one settling, one writing, one reading. A page's
reads (source tombstones, plan, the targets' tombstone reads) overlap the writes of the
page before it when the two share no key; its writes always wait for those writes; a page
sharing a key waits with its reads too; and a stop starts no write of a page read ahead."""

from __future__ import annotations

import threading
import time
from typing import Any

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


def test_a_page_of_other_keys_reads_while_the_page_before_writes_and_writes_after_it() -> None:
    stream = FakeStream({"s1": [keyed(i, f"k{i}") for i in range(1, 7)]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("start 4")  # page 4's reads, while page 1 still writes
    assert "written 1" not in journal.events
    assert not_within(journal, "writes 4")  # its writes wait for page 1's
    go.set()
    stepping.join(WAIT)
    journal.wait_for("writes 4")
    assert journal.events.index("written 1") < journal.events.index("writes 4")


def test_a_page_sharing_a_key_with_a_page_writing_reads_only_after_its_writes() -> None:
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
    go.set()
    stepping.join(WAIT)
    journal.wait_for("start 4")
    assert journal.events.index("written 1") < journal.events.index("start 4")


def test_three_pages_are_in_flight_one_settling_one_writing_one_reading() -> None:
    stream = FakeStream({"s1": [keyed(i, f"k{i}") for i in range(1, 10)]})
    checkpoints = FakeCheckpoints()
    settle_1, write_4, read_7 = threading.Event(), threading.Event(), threading.Event()
    journal = Journal(held={1: settle_1}, before_written={4: write_4}, before_ready={7: read_7})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 4")
    journal.wait_for("start 7")
    # The state the test is about: page 1 settles, page 4 writes, page 7 reads.
    assert "written 1" in journal.events and "end 1" not in journal.events
    assert "written 4" not in journal.events and "writes 7" not in journal.events
    assert saved(checkpoints) == set()
    settle_1.set()
    stepping.join(WAIT)
    assert saved(checkpoints) == {f"{3:021d}"}  # page 1 only, in order
    (cursor,) = w.cursors
    assert cursor.inflight is not None and first(cursor.inflight.records) == 4
    assert cursor.queued is not None and first(cursor.queued.records) == 7
    write_4.set()
    read_7.set()
    for _ in range(3):
        w.step()
    assert saved(checkpoints) == {f"{9:021d}"}
    written = [journal.events.index(f"written {p}") for p in (1, 4, 7)]
    assert written == sorted(written)


def test_a_stop_starts_no_write_of_a_page_read_ahead() -> None:
    stream = FakeStream({"s1": [keyed(i, f"k{i}") for i in range(1, 7)]})
    checkpoints, go, stop = FakeCheckpoints(), threading.Event(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints, stop=stop)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("start 4")  # read ahead, its reads under way while page 1 writes
    stop.set()
    go.set()
    stepping.join(WAIT)
    w.flush()
    assert "writes 4" not in journal.events  # it never wrote: replayed from checkpoint 3
    assert saved(checkpoints) == {f"{3:021d}"}
    (cursor,) = w.cursors
    assert cursor.inflight is None and cursor.queued is None and cursor.iterator is None


def test_a_page_with_a_record_without_keys_shares_every_key() -> None:
    assert page_keys([keyed(1, "a"), record(2)]) is None
    keys = page_keys([keyed(1, "a"), keyed(2, "a")])
    assert keys is not None and len(keys) == 1


def test_a_page_waiting_for_the_page_before_holds_no_thread_of_the_replicators_pool() -> None:
    """More pages at once than the replicator's pool has threads each wait in ``ready``
    (for the page before theirs) until all of them got there: ``ready`` runs once a page,
    in the page's own thread, after every region's reads. (Called by each region's
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
    pages = 3 * len(TARGETS) + 1  # one more than the pool's threads
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
    assert waited_in == [True] * pages


def test_caught_up_after_writes_that_outlast_their_reads_the_next_page_is_read_once_written() -> (
    None
):
    """Pages whose reads take nothing (updates: a put where the item is present) and
    whose writes take a while: reading the next page as their writes start would only
    make it wait for them, holding what arrives meanwhile back a page; it is read once
    they are written (by the time the last page settled took to write)."""
    stream = LoggedStream({"s1": [keyed(1, "k1"), keyed(2, "k2")]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    clock = ManualClock()

    def writing_takes_a_while() -> None:
        clock.t += 5.0

    journal = Journal(before_written={3: go}, while_writing=writing_takes_a_while)
    w = worker(journal, stream, checkpoints, clock=clock)
    w.step()  # page 1 (short: caught up), its writes timed at 5 s, settled
    assert saved(checkpoints) == {f"{2:021d}"}
    stream.append(3)
    stream.shards["s1"][-1]["dynamodb"]["Keys"] = {"pk": {"S": "k3"}}
    reads = len(stream.reads)
    stepping = threading.Thread(target=w.step)
    stepping.start()
    journal.wait_for("writes 3")
    wait_reads(stream, reads + 1)  # page 3 itself
    began = time.monotonic()
    while len(stream.reads) == reads + 1 and time.monotonic() - began < 0.3:
        time.sleep(0.005)  # a bounded wait for a read that must not come yet
    assert len(stream.reads) == reads + 1 and "written 3" not in journal.events
    go.set()
    stepping.join(WAIT)
    assert len(stream.reads) >= reads + 2  # read once page 3 was written
