"""The conflict log: one JSON object per line, to standard output or appended to a file.

In Lambda, standard output is the function's CloudWatch Logs stream. Sampling keeps a
fixed fraction of the conflicts (independently per conflict, so a hot key is not always
in or always out); the metrics count every conflict either way.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from dynamodb_replicator.core.conflicts import Conflict, conflict_record
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.settings import ConflictLogSettings

__all__ = ["JsonLinesConflictLog", "open_conflict_log"]


class JsonLinesConflictLog:
    """A ConflictLog writing JSON lines to ``stream`` (None: whatever ``sys.stdout`` is at
    the time of writing); safe to share between threads."""

    def __init__(
        self,
        stream: TextIO | None,
        *,
        sample_rate: float = 1.0,
        include_items: bool = False,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        owned: bool = False,
    ) -> None:
        self.stream = stream
        self.sample_rate = sample_rate
        self.include_items = include_items
        self.clock = clock
        self.rng = rng
        self.owned = owned
        self._lock = threading.Lock()

    def record(self, table: str, source: str, conflicts: Sequence[Conflict]) -> None:
        now = self.clock()
        lines = [
            json.dumps(
                conflict_record(
                    conflict,
                    table=table,
                    source=source,
                    at=now,
                    include_items=self.include_items,
                ),
                separators=(",", ":"),
            )
            for conflict in conflicts
            if self.sample_rate >= 1.0 or self.rng() < self.sample_rate
        ]
        if not lines:
            return
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def close(self) -> None:
        if self.owned and self.stream is not None:
            self.stream.close()


def open_conflict_log(settings: ConflictLogSettings) -> JsonLinesConflictLog | None:
    """The log ``settings`` ask for; None when it is off."""
    if settings.destination == "off":
        return None
    stream: TextIO | None = None
    if settings.destination != "-":
        try:
            stream = open(settings.destination, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"cannot open conflict log {settings.destination}: {exc}") from exc
    return JsonLinesConflictLog(
        stream,
        sample_rate=settings.sample_rate,
        include_items=settings.include_items,
        owned=stream is not None,
    )
