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
        self._idle = 0
        self._closed = False

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
            for index, call in enumerate(calls):
                self._tasks.put((batch, index, call))
            # Idle threads take tasks; start more while the tasks outnumber them. A stale
            # idle count only starts fewer threads now: every task is still run, by the
            # threads there are, and the next batch starts the ones missing.
            wanted = min(self._limit, len(self._threads) + max(0, len(calls) - self._idle))
            while len(self._threads) < wanted:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        batch.wait()
        if batch.errors:
            raise batch.errors[min(batch.errors)]
        return batch.results  # type: ignore[return-value]  # every index was set

    def _work(self) -> None:
        tasks = self._tasks
        while True:
            with self._lock:
                self._idle += 1
            task = tasks.get()
            with self._lock:
                self._idle -= 1
            if task is _STOP:
                return
            batch, index, call = task
            try:
                result = call()
            except BaseException as exc:  # handed to the caller of run_all
                batch.finish(index, None, exc)
            else:
                batch.finish(index, result, None)

    def close(self) -> None:
        """End every thread once the tasks queued before this are done."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._tasks.put(_STOP)
        for thread in threads:
            thread.join()
