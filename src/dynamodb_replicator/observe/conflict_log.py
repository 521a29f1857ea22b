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
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.codec import item_to_json, key_object
from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import Item, Version
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.settings import ConflictLogSettings

__all__ = ["JsonLinesConflictLog", "conflict_record", "open_conflict_log"]


def _version(version: Version | None) -> dict[str, str] | None:
    if version is None:
        return None
    return {"timestamp": version.raw_timestamp or str(version.timestamp), "origin": version.origin}


def conflict_record(
    conflict: Conflict,
    *,
    table: str,
    source: str,
    at: float,
    include_items: bool = False,
) -> dict[str, Any]:
    """The conflict log's JSON object (one line per conflict).

    Keys are logged (they identify the item); attribute values only with ``include_items``.
    """
    winner = "change" if conflict.outcome is ConflictOutcome.WON else "other"
    record: dict[str, Any] = {
        "at": round(at, 3),
        "table": table,
        "outcome": conflict.outcome.value,
        "winner": winner,
        "region": conflict.region,
        "source": source,
        "operation": conflict.operation,
        "key": key_object(conflict.key.to_attributes()),
        "sequence": conflict.sequence_number,
        "change": _version(conflict.change),
        "other": _version(conflict.other),
        "other_deleted": conflict.other_deleted,
    }
    if include_items:
        record["change_item"] = _item(conflict.change_item)
        record["other_item"] = _item(conflict.other_item)
    return record


def _item(item: Item | None) -> dict[str, Any] | None:
    return None if item is None else item_to_json(item)


class JsonLinesConflictLog:
    """A ConflictLog writing JSON lines to ``stream`` (None: whatever ``sys.stdout`` is at
    the time of writing); safe to share between threads."""

    def __init__(
        self,
        stream: TextIO | None,
        *,
        sample_rate: float = 1.0,
        include_items: bool = False,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
        owned: bool = False,
    ) -> None:
        self.stream = stream
        self.sample_rate = sample_rate
        self.include_items = include_items
        self.clock = clock or SystemClock()
        self.rng = rng
        self.owned = owned
        self._lock = threading.Lock()

    def record(self, table: str, source: str, conflicts: Sequence[Conflict]) -> None:
        now = self.clock.now()
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
