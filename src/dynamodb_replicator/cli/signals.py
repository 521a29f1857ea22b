"""Signals handled on a thread, never inside the signal handler: the one way commands take
SIGINT and SIGTERM (``run``, and the Ctrl-C of long commands: cli/interrupt.py).

Python runs a signal handler in the main thread, between two of its bytecodes, whatever that
thread holds at the time. A handler that sets a ``threading.Event`` takes the event's lock;
when the main thread is inside that event's ``wait`` (it holds the same lock for a few
bytecodes), the handler waits for itself: the process never stops. So the handler here only
writes the signal's number to a pipe (no lock), and a thread of its own reads it and calls
``on_signal``, in the order the signals came.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType

__all__ = ["Signals"]

log = logging.getLogger(__name__)


class Signals:
    """While the ``with`` block runs, each of ``numbers`` received is handed to
    ``on_signal(number)`` on the thread ``signals`` (one at a time, in order)."""

    def __init__(self, numbers: Iterable[int], on_signal: Callable[[int], None]) -> None:
        self.numbers = tuple(numbers)
        self.on_signal = on_signal
        self._previous: dict[int, object] = {}
        self._read = self._write = -1
        self._thread: threading.Thread | None = None

    def _handler(self, number: int, frame: FrameType | None) -> None:
        os.write(self._write, bytes([number]))

    def _deliver(self) -> None:
        while data := os.read(self._read, 1):
            try:
                self.on_signal(data[0])
            except Exception:  # the signals after it are still delivered
                log.exception("signal not handled", extra={"signal": data[0]})

    def __enter__(self) -> Signals:
        self._read, self._write = os.pipe()
        try:
            thread = threading.Thread(target=self._deliver, name="signals", daemon=True)
            thread.start()
            self._thread = thread
            for number in self.numbers:
                self._previous[number] = signal.signal(number, self._handler)
        except BaseException:  # no thread to be had, off the main thread, an uncatchable signal
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        os.close(self._write)  # the thread reads the end of the pipe, after any signal before
        if self._thread is not None:
            self._thread.join()
        os.close(self._read)
