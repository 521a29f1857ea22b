"""A pool of long-lived threads that runs batches of blocking calls, cheaper per call than
``concurrent.futures``.

A writer hands its pool every key chain of a page at once and waits for all of them. With
``ThreadPoolExecutor`` each chain cost a ``Future`` (a lock, a condition variable), the
executor's thread accounting on every ``submit``, and a waiter installed on every future by
``wait``: about a sixth of the runner's CPU in a profile of the hot-shard benchmark at
250 ms, where a page wakes a thousand threads per target. Here a batch is one countdown and
one event; a task is a tuple on a ``SimpleQueue`` (C code).

The store port blocks (one call, one round trip), so each call in flight still holds a
thread: depth is at most ``limit``, as before.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Workers"]

T = TypeVar("T")


class _Batch(Generic[T]):
    """The tasks of one ``run_all``: their results in order, and when the last ended."""

    __slots__ = ("done", "errors", "left", "lock", "results")

    def __init__(self, count: int) -> None:
        self.results: list[T | None] = [None] * count
        self.errors: dict[int, BaseException] = {}
        self.left = count
        self.lock = threading.Lock()
        self.done = threading.Event()

    def finish(self, index: int, result: T | None, error: BaseException | None) -> None:
        with self.lock:
            if error is None:
                self.results[index] = result
            else:
                self.errors[index] = error
            self.left -= 1
            last = self.left == 0
        if last:
            self.done.set()

    def wait(self) -> None:
        """Until every task of the batch ended."""
        self.done.wait()


_STOP = None  # the task that tells a thread to end


class Workers:
    """Up to ``limit`` threads, started as batches need them, ended by ``close``."""

    def __init__(self, limit: int, name: str = "writer") -> None:
        if limit < 1:
            raise ValueError("a pool needs at least one thread")
        self._limit = limit
        self._name = name
        self._tasks: queue.SimpleQueue[tuple[_Batch[Any], int, Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # The threads hold the queue, not the pool: a pool nobody closed ends its threads
        # once it is dropped (as ThreadPoolExecutor's did).
        weakref.finalize(self, _stop, self._tasks, self._threads)

    def run_all(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run every call of ``calls`` on the pool, concurrently; their results in order.
        Returns or raises only once every call ended; raises the exception of the first
        call (in order) that raised one."""
        if not calls:
            return []
        batch: _Batch[T] = _Batch(len(calls))
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            # Threads first, tasks after: a thread that cannot start raises before any call
            # of this batch is queued, so none is left to run beside a retry of it. Threads
            # are not counted idle: an idle count lags behind the threads taking tasks, and
            # a batch queued behind another's slow call must still get a thread while the
            # pool is under its limit.
            wanted = min(self._limit, len(self._threads) + len(calls))
            while len(self._threads) < wanted:
                thread = threading.Thread(
                    target=_work,
                    args=(self._tasks,),
                    name=f"{self._name}-{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
            for index, call in enumerate(calls):
                self._tasks.put((batch, index, call))
        batch.wait()
        if batch.errors:
            raise batch.errors[min(batch.errors)]
        return batch.results  # type: ignore[return-value]  # every index was set

    def close(self) -> None:
        """End every thread once the tasks queued before this are done."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        _stop(self._tasks, threads)
        for thread in threads:
            thread.join()


_Tasks = queue.SimpleQueue[tuple[_Batch[Any], int, Callable[[], Any]] | None]


def _work(tasks: _Tasks) -> None:
    while True:
        task = tasks.get()
        if task is _STOP:
            return
        batch, index, call = task
        try:
            result = call()
        except BaseException as exc:  # handed to the caller of run_all
            batch.finish(index, None, exc)
        else:
            batch.finish(index, result, None)


def _stop(tasks: _Tasks, threads: list[threading.Thread]) -> None:
    """One stop task per thread: each ends once the tasks queued before it are done."""
    for _ in list(threads):
        tasks.put(_STOP)
