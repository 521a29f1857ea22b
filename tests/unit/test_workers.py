"""The writers' thread pool (``core.workers``): a batch's results in order, its calls run
concurrently up to the limit, and it returns or raises only once every call of it ended."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

import pytest

from dynamodb_replicator.core.workers import Workers

WAIT = 10.0  # seconds: only a hang reaches it
# How long a defect gets to show itself where the test asserts that something does NOT
# happen (a run_all ending early): the correct pool never ends within it.
WINDOW = 0.5


def _poll(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.001)


def test_results_come_in_the_order_of_the_calls() -> None:
    pool = Workers(3)
    try:
        calls = [functools.partial(pow, n, 2) for n in range(20)]
        assert pool.run_all(calls) == [n * n for n in range(20)]
        assert pool.run_all([]) == []
    finally:
        pool.close()


def test_calls_of_a_batch_run_concurrently_up_to_the_limit() -> None:
    pool = Workers(4)
    running: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def call() -> None:
        with lock:
            running.append(1)
        assert release.wait(WAIT)

    done = threading.Thread(target=pool.run_all, args=([call] * 6,), daemon=True)
    done.start()
    try:
        _poll(lambda: len(running) == 4)  # four at once: the limit, not one at a time
        release.set()
        done.join(WAIT)
        assert not done.is_alive()
        assert len(running) == 6
    finally:
        release.set()
        pool.close()


def test_a_failed_call_is_raised_only_once_every_call_of_the_batch_ended() -> None:
    """A chain raising an unexpected error must not end the batch while another key's
    chain still writes (the writer's guarantee: no write of a batch runs unseen)."""
    pool = Workers(2)
    slow_started, release, slow_done = threading.Event(), threading.Event(), threading.Event()
    after_error = threading.Event()
    ended = threading.Event()
    seen: list[object] = []

    def fails() -> None:
        assert slow_started.wait(WAIT)
        raise RuntimeError("a bug in one chain")

    def slow() -> None:
        slow_started.set()
        assert release.wait(WAIT)
        slow_done.set()

    def next_task() -> None:
        # Runs on the thread that ran ``fails``, after the pool recorded its error.
        after_error.set()

    def run() -> None:
        try:
            pool.run_all([fails, slow, next_task])
        except RuntimeError as exc:
            seen.append((str(exc), slow_done.is_set()))
        finally:
            ended.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        assert after_error.wait(WAIT)  # the error is recorded; the slow call still runs
        assert not ended.wait(WINDOW), "run_all ended while a call of its batch still ran"
        release.set()
        assert ended.wait(WAIT)
        assert seen == [("a bug in one chain", True)]
    finally:
        release.set()
        pool.close()


def test_the_first_failed_call_in_order_is_raised() -> None:
    pool = Workers(3)
    second_raised = threading.Event()

    def second() -> None:
        second_raised.set()
        raise ValueError("second")

    def first() -> None:
        assert second_raised.wait(WAIT)  # raises after the later call did
        raise KeyError("first")

    try:
        with pytest.raises(KeyError):
            pool.run_all([lambda: None, first, second])
    finally:
        pool.close()


def test_close_ends_every_thread_and_refuses_new_batches() -> None:
    pool = Workers(3, name="closing-pool")
    pool.run_all([lambda: None] * 3)
    started = [t for t in threading.enumerate() if t.name.startswith("closing-pool-")]
    assert started
    pool.close()
    assert not any(t.is_alive() for t in started)
    with pytest.raises(RuntimeError):
        pool.run_all([lambda: None])
