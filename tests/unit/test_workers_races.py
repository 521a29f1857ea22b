"""The writers' thread pool (``core.workers``) under interleavings of two batches (a page
settling while the next one writes share one writer's pool) and a thread that cannot
start. Each interleaving is reached with events and a hooked task queue, never sleeps."""

from __future__ import annotations

import gc
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from dynamodb_replicator.core.workers import Workers

WAIT = 10.0  # seconds: only a hang reaches it
# How long a call gets to start where the pool has room for it (the correct pool starts it
# at once).
WINDOW = 2.0


def _poll(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.001)


class _HeldAfterTaking(queue.SimpleQueue[Any]):
    """The pool's task queue, with a hook: while ``hold`` is clear, a thread that took a
    task waits before going on, as it does for the pool's lock while another caller of
    ``run_all`` holds it (deciding how many threads to start)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.hold.set()
        self.taken = threading.Event()
        self.queued = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.queued += 1
        super().put(item, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        task = super().get(block, timeout)
        self.taken.set()
        assert self.hold.wait(WAIT)
        return task


def test_a_batch_gets_a_thread_while_the_pool_is_under_its_limit() -> None:
    """Page N's settling read and page N+1's writes reach one writer's pool at the same
    moment (``runner.pipeline``). With one idle thread and a limit of two, the thread takes
    the settling read; the writes must get the second thread, not wait for that read (which
    may retry for seconds: settling has no deadline) while their own deadline runs out."""
    pool = Workers(2, name="under-limit")
    tasks = _HeldAfterTaking()
    pool._tasks = tasks  # before any thread starts: every thread reads this queue
    settling_started, release_settling = threading.Event(), threading.Event()
    write_started = threading.Event()

    def settling_read() -> None:
        settling_started.set()
        assert release_settling.wait(WAIT)

    def write() -> None:
        write_started.set()

    try:
        pool.run_all([lambda: None])  # one thread started: the pool is under its limit
        tasks.hold.clear()
        tasks.taken.clear()
        settles = threading.Thread(target=pool.run_all, args=([settling_read],), daemon=True)
        settles.start()
        assert tasks.taken.wait(WAIT)  # the idle thread took the settling read
        writes = threading.Thread(target=pool.run_all, args=([write],), daemon=True)
        writes.start()
        _poll(lambda: tasks.queued == 3)  # the write is queued ...
        with pool._lock:  # ... and its run_all decided how many threads to start
            assert len(pool._threads) <= 2
        tasks.hold.set()
        assert settling_started.wait(WAIT)
        assert write_started.wait(WINDOW), "the write waited for the settling read"
    finally:
        tasks.hold.set()
        release_settling.set()
        pool.close()


def test_a_batch_that_raised_leaves_no_call_to_run_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run_all`` returns or raises only once every call of its batch ended. A thread the
    system cannot start (``RuntimeError: can't start new thread``, threads or memory
    exhausted) makes ``StoreWriter.apply`` raise: the page is failed and applied again,
    so a write of the failed batch must not run later (beside the retry's write of the
    same key, out of per-key order, after the page's outcome was decided)."""
    pool = Workers(2, name="no-start")
    ran: list[str] = []
    start = threading.Thread.start

    def cannot_start(thread: threading.Thread) -> None:
        if thread.name.startswith("no-start-"):
            raise RuntimeError("can't start new thread")
        start(thread)

    try:
        monkeypatch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            pool.run_all([lambda: ran.append("the failed batch's write")])
        monkeypatch.undo()  # threads start again
        assert pool.run_all([lambda: "the retry's write"]) == ["the retry's write"]
        assert ran == [], "a call of the batch that raised ran after run_all raised"
    finally:
        monkeypatch.undo()
        pool.close()


def test_the_threads_of_a_pool_nobody_closed_end_once_it_is_dropped() -> None:
    """A writer dropped without ``close`` (a Lambda replicator evicted from its cache, a
    tool that failed between building its writers and closing them) must not keep up to
    ``limit`` threads for the life of the process; ``ThreadPoolExecutor``, which the pool
    replaced, ended its threads once it was collected."""
    pool = Workers(3, name="dropped-pool")
    pool.run_all([lambda: None] * 3)
    threads = [t for t in threading.enumerate() if t.name.startswith("dropped-pool-")]
    assert len(threads) == 3  # the state: a pool with idle threads
    dropped = weakref.ref(pool)
    del pool
    gc.collect()
    try:
        deadline = time.monotonic() + WINDOW
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not any(t.is_alive() for t in threads), "a dropped pool's threads still wait"
    finally:
        kept = dropped()
        if kept is not None:  # not collected: end its threads, not to leak them into the run
            kept.close()
