"""A page's batches, one per region, handed to the replicator's pool: when every region's
writes are done (``WrittenGate``), and none left writing unseen once the page gave up
(``Handover``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["AbandonedBatchError", "Handover", "WrittenGate"]

T = TypeVar("T")


class AbandonedBatchError(RuntimeError):
    """A region's batch the pool started after its page gave up: it did nothing."""


class Handover:
    """The region batches of one page on their way to a pool. Handing one over may fail
    after the pool queued it (CPython's executor queues a task, then starts the thread it
    needs, which may raise): that batch, or another queued before it, may then still run
    with nobody waiting for it, and its writes land after the shard was handed over.
    So once the page gives up (``abandon``) a batch not yet started never starts, and
    one already started is waited for."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._abandoned = False

    def wrap(self, call: Callable[[], T]) -> Callable[[], T]:
        """``call``, run only if the page has not given up by the time it starts."""

        def run() -> T:
            with self._changed:
                if self._abandoned:
                    raise AbandonedBatchError("the page gave up before this batch started")
                self._running += 1
            try:
                return call()
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

        return run

    def abandon(self) -> None:
        """The page gives up: no batch starts any more; returns once none is running."""
        with self._changed:
            self._abandoned = True
            while self._running:
                self._changed.wait()


class WrittenGate:
    """Calls ``written`` once: when every expected region said its writes are done, or
    when ``open`` is called (the batch is over), whichever comes first."""

    def __init__(self, written: Callable[[], None] | None) -> None:
        self._written = written
        self._left = 0
        self._lock = threading.Lock()

    def expect(self, regions: int) -> None:
        with self._lock:
            self._left = regions
        if regions == 0:
            self.open()

    def arrival(self) -> Callable[[], None]:
        """A one-shot callback for one region's writer."""
        arrived = threading.Event()

        def arrive() -> None:
            with self._lock:
                if arrived.is_set():
                    return
                arrived.set()
                self._left -= 1
                last = self._left == 0
            if last:
                self.open()

        return arrive

    def open(self) -> None:
        with self._lock:
            written, self._written = self._written, None
        if written is not None:
            written()
