"""Ctrl-C for long commands (add-region's copy and merge, version-items): one mechanism.

The first SIGINT (or SIGTERM) sets ``stop``: the command's scan threads and rate limiter
see it within one slice of writes, save their resume points and return; the command then
prints how to resume and exits 130. A second SIGINT stops the process at once (exit 130):
whatever slice was in flight is written again on resume, which the copies tolerate (a
conditional write of the same version is "already there"; the fast copy writes the same
item again).

Use: ``with Interruption(stream, resume="...") as interruption: ... work(interruption.stop)``,
then ``if interruption.stop.is_set(): return interruption.report()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import TracebackType
from typing import IO

from dynamodb_replicator.cli.signals import Signals

__all__ = ["EXIT_INTERRUPTED", "Interruption"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C
# How long a signal waits for its line to be written before it acts anyway: a stream nobody
# reads (``cmd 2>&1 | less`` scrolled back, a terminal paused by Ctrl-S) must not hold a
# Ctrl-C back.
SAY_WITHIN_SECONDS = 1.0


class Interruption:
    """Takes the two-step Ctrl-C (and SIGTERM) while the ``with`` block runs."""

    def __init__(self, *, resume: str, stream: IO[str] | None = None) -> None:
        self.resume = resume
        self.stream = stream or sys.stderr
        self.stop = threading.Event()
        self._signals = Signals((signal.SIGINT, signal.SIGTERM), self._on_signal)

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _on_signal(self, number: int) -> None:
        # On the signals' thread (cli/signals.py), one signal at a time; it never blocks on
        # the stream (one nobody reads, a terminal paused), so a second signal always ends it.
        if self.stop.is_set():
            # The second signal: no waiting for the slices in flight (they are redone on
            # resume). os._exit skips the thread joins a normal exit would wait for.
            try:
                self._say_within(f"stopped at once; resume with: {self.resume}")
            finally:
                os._exit(EXIT_INTERRUPTED)
        # Said before the stop is set: the work ends (and ``report`` speaks) only after it,
        # its line queued behind this one on the stream even when this one is still waiting;
        # set even when the line's thread cannot be started.
        try:
            self._say_within("stopping: saving the resume point (Ctrl-C again to stop at once)")
        finally:
            self.stop.set()

    def _say_within(self, text: str) -> None:
        """``_say`` on a thread of its own, waited for ``SAY_WITHIN_SECONDS`` at most; a
        line that cannot be written (a closed stream) is left out."""

        def say() -> None:
            with contextlib.suppress(OSError, ValueError):  # stderr gone: the status tells
                self._say(text)

        thread = threading.Thread(target=say, name="interruption-say", daemon=True)
        thread.start()
        thread.join(SAY_WITHIN_SECONDS)

    def __enter__(self) -> Interruption:
        self._signals.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._signals.__exit__(exc_type, exc, traceback)

    def report(self) -> int:
        """Say how to resume; the exit status of an interrupted command."""
        self._say(f"interrupted, resume point saved; resume with: {self.resume}")
        return EXIT_INTERRUPTED
