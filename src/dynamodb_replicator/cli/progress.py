"""Progress of a long scan on stderr: a live rich display on a terminal, else a line now and
then, so a ``diff`` or ``repair`` of a large table never looks hung."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["ScanProgress"]

LINE_EVERY_S = 10.0


class ScanProgress:
    """Counts scanned items per region: ``with ScanProgress(...) as p: ... p(region, n)``.

    ``mode``: ``on`` (live display), ``off`` (nothing), ``auto`` (live display when stderr
    is a terminal, else a line every ``every`` seconds).
    """

    def __init__(
        self,
        what: str,
        regions: Sequence[str],
        *,
        mode: str = "auto",
        every: float = LINE_EVERY_S,
        stream: TextIO | None = None,
    ) -> None:
        self.what, self.every = what, every
        self.stream = stream or sys.stderr
        self.counts = dict.fromkeys(regions, 0)
        self.lock = threading.Lock()
        live = mode == "on" or (mode == "auto" and self.stream.isatty())
        self.lines = mode == "auto" and not live
        self.started = self.last_line = time.monotonic()
        self.progress: Progress | None = None
        self.tasks: dict[str, object] = {}
        if live:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.completed:,} items"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=True,
            )

    def __enter__(self) -> ScanProgress:
        if self.progress is not None:
            self.progress.start()
            for region in self.counts:
                self.tasks[region] = self.progress.add_task(f"{self.what} {region}", total=None)
        return self

    def __call__(self, region: str, count: int) -> None:
        """``count`` more items scanned in ``region`` (called from the scan threads)."""
        with self.lock:
            self.counts[region] = self.counts.get(region, 0) + count
            if self.progress is not None and region in self.tasks:
                self.progress.advance(self.tasks[region], count)  # type: ignore[arg-type]
            now = time.monotonic()
            if self.lines and now - self.last_line >= self.every:
                self.last_line = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float) -> str:
        """The periodic progress line."""
        counts = ", ".join(f"{region} {n:,}" for region, n in self.counts.items())
        return f"{self.what}: scanned {counts} items ({now - self.started:.0f} s)"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
