"""Pages of other keys write early: a page that shares no key with a page before it still
writing reads and writes beside it; one that shares a key waits, reads and writes, for
it. Caught up, a read ahead that finds nothing looks again ``LOOK_AGAIN_S`` later without
blocking on the page in flight, and does not spin. A seeded fuzz over pages of a few keys
each, written at random speeds: writes of one key reach each target in stream order, and
pages settle in stream order."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core import defaults
from dynamodb_replicator.runner.pipeline import Flight
from dynamodb_replicator.runner.shard_pages import LOOK_AGAIN_S
from dynamodb_replicator.runner.shard_state import Cursor

from .test_pipeline import WAIT, Journal, saved
from .test_pipeline_overlapping_reads import keyed, not_within, wait_reads, worker
from .test_pipeline_read_ahead import LoggedStream, make, seq
from .test_shardworker import TARGETS, FakeCheckpoints, FakeStream


def test_a_page_of_other_keys_writes_beside_a_page_writing_and_one_waiting_for_it() -> None:
    """Page 1 (a, b, c) writes, held; page 4 shares a with it and waits; page 7 (d, e, f)
    shares no key with either (both still to be written): it reads and writes at once."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c")]
    records += [keyed(4, "a"), keyed(5, "x"), keyed(6, "y")]
    records += [keyed(7, "d"), keyed(8, "e"), keyed(9, "f")]
    stream = FakeStream({"s1": records})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 1")
    journal.wait_for("written 7")  # while page 1's writes are held
    assert "written 1" not in journal.events and "start 4" not in journal.events
    go.set()
    stepping.join(WAIT)
    journal.wait_for("written 4")
    events = journal.events
    assert events.index("written 1") < events.index("start 4") < events.index("writes 4")
    for _ in range(2):
        w.step()
    assert saved(checkpoints) == {f"{9:021d}"}


def test_a_page_sharing_a_key_with_a_page_written_early_waits_for_it() -> None:
    """Page 4 (other keys) writes early beside page 1, held; page 7 shares a key with page
    4 only: it waits, reads and writes, until page 4's writes are done, which are held in
    turn while page 1's are."""
    records = [keyed(1, "a"), keyed(2, "b"), keyed(3, "c")]
    records += [keyed(4, "d"), keyed(5, "e"), keyed(6, "f")]
    records += [keyed(7, "f"), keyed(8, "g"), keyed(9, "h")]
    stream = FakeStream({"s1": records})
    checkpoints, go_1, go_4 = FakeCheckpoints(), threading.Event(), threading.Event()
    journal = Journal(before_written={1: go_1, 4: go_4})
    w = worker(journal, stream, checkpoints)
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 1")
    journal.wait_for("writes 4")  # early: beside page 1's writes
    assert not_within(journal, "start 7")  # page 7 waits with its reads for page 4's f
    go_4.set()
    journal.wait_for("written 4")
    # Page 7 waits for every page before it still writing, page 1 too (it cannot tell
    # which of them it must follow once one shares a key).
    assert not_within(journal, "start 7")
    go_1.set()
    stepping.join(WAIT)
    journal.wait_for("written 7")
    events = journal.events
    assert events.index("written 4") < events.index("start 7")
    assert events.index("written 1") < events.index("start 7") < events.index("writes 7")


def test_an_empty_read_ahead_looks_again_without_blocking_on_the_page_in_flight() -> None:
    """Caught up (short pages), a real clock, page 1's writes held: the read ahead finds
    nothing and looks again ``LOOK_AGAIN_S`` later, not once page 1 is written; a record
    appended meanwhile is read and launched while page 1 is still held. The looks are
    paced: no more of them than the time held allows at ``LOOK_AGAIN_S`` apart."""
    stream = LoggedStream({"s1": [keyed(1, "a"), keyed(2, "b")]})
    checkpoints, go = FakeCheckpoints(), threading.Event()
    journal = Journal(before_written={1: go})
    w = worker(journal, stream, checkpoints, clock=SystemClock())
    began = time.monotonic()
    stepping = threading.Thread(target=w.step, daemon=True)
    stepping.start()
    journal.wait_for("writes 1")
    wait_reads(stream, 3)  # page 1, then two looks that found nothing
    assert "written 1" not in journal.events
    with stream.lock:
        stream.shards["s1"].append(keyed(3, "c"))
    journal.wait_for("written 3")  # read on a later look, launched, written beside page 1
    assert "written 1" not in journal.events
    wait_reads(stream, len(stream.reads) + 3)  # page 1 held on: three looks more
    with stream.lock:
        reads, elapsed = len(stream.reads), time.monotonic() - began
    assert "written 1" not in journal.events
    go.set()
    stepping.join(WAIT)
    assert not stepping.is_alive()
    # Page 1, page 3 and the look at once after each (a cadence of nothing yet: no page
    # settled), and looks LOOK_AGAIN_S apart in between: no spin.
    assert reads <= elapsed / LOOK_AGAIN_S + 3, (reads, elapsed)
    (cursor,) = w.cursors
    assert [seq(f.records[0]) for f in cursor.inflight] == [3]
    w.flush()
    assert saved(checkpoints) == {f"{3:021d}"}


# -- a seeded fuzz: pages of a few keys, writes at random speeds -------------------------
def early_fuzz(seed: int) -> list[str]:
    rng = random.Random(seed)
    keys, limit = rng.choice([1, 2, 3, 5, 9]), rng.choice([1, 2, 3, 4])
    w, stream, checking = make(0, limit=limit)
    lock = threading.Lock()
    key_of: dict[int, str] = {}
    total = rng.randint(20, 60)

    def append(count: int) -> None:  # under ``lock``
        for _ in range(count):
            n = len(key_of) + 1
            if n > total:
                return
            key_of[n] = f"k{rng.randrange(keys)}"
            r = stream.record(n)
            r["dynamodb"]["Keys"] = {"pk": {"S": key_of[n]}}
            with stream.lock:
                stream.shards["s1"].append(r)

    def during(records: Sequence[Mapping[str, Any]]) -> None:
        with lock:
            if rng.random() < 0.5:
                append(rng.randint(1, 3))
            delay = rng.choice([0.0, 0.0, 0.0005, 0.002])
        time.sleep(delay)  # the page's writes take this long (simulated latency)

    settled: list[int] = []
    complete = w._complete

    def noted(cursor: Cursor, flight: Flight) -> bool:
        settled.append(seq(flight.records[0]))
        return complete(cursor, flight)

    w._complete = noted  # type: ignore[method-assign]
    checking.during = during
    with lock:
        append(rng.randint(0, 25))  # a backlog: full pages, read ahead up to five
    for _ in range(400):
        with lock:
            if rng.random() < 0.3:
                append(rng.randint(1, 4))
            done = len(key_of) >= total
        if done and checking.caught_up() and not any(c.inflight for c in w.cursors):
            break
        w.clock.t += rng.choice([0.1, 1.0])  # type: ignore[attr-defined]
        w.step()
    w.flush()
    found = [f"seed {seed}: {f}" for f in checking.found]
    if not checking.caught_up():
        found.append(f"seed {seed}: not caught up with {checking.last()}: {checking.saved}")
    for target in TARGETS:
        for key in sorted(set(key_of.values())):
            mine = [n for n in checking.applied[target] if key_of[n] == key]
            want = sorted(n for n, k in key_of.items() if k == key)
            if mine != want:
                found.append(f"seed {seed}: {key} reached {target} as {mine}, not {want}")
    if settled != sorted(set(settled)):
        found.append(f"seed {seed}: pages settled out of stream order: {settled}")
    return found


def test_seeded_fuzz_writes_of_one_key_reach_each_target_in_stream_order() -> None:
    began, found, seeds = time.monotonic(), [], 0
    for seed in range(100):
        found += early_fuzz(seed)
        seeds += 1
        if time.monotonic() - began > 4:
            break
    assert found == [] and seeds >= 5
    assert defaults.PAGES_IN_FLIGHT == 5
