"""An in-memory store port for tests: evaluates the same condition trees DynamoDB gets.

``before_call`` runs before every call, so a test can let other operations slip in
between any two calls of the protocol; ``after_apply`` runs after a write was applied
and may raise, which models a write applied but never acknowledged. With ``streams`` on,
every change of an item (the replicator's and the application's) is also recorded as a
``NEW_AND_OLD_IMAGES`` stream record in GetRecords form, in ``stream``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.model import Item, ItemKey
from dynamodb_replicator.core.store import StoreResult

__all__ = ["MemoryStore"]

Hook = Callable[["MemoryStore", str], None]


def _nothing(_store: MemoryStore, _call: str) -> None:
    return None


@dataclass(slots=True)
class MemoryStore:
    """One region's tables as dicts of items keyed by ItemKey; thread-safe."""

    name: str
    key_names: tuple[str, ...] = ("pk",)
    tables: dict[str, dict[ItemKey, Item]] = field(default_factory=dict)
    before_call: Hook = _nothing
    after_apply: Hook = _nothing
    calls: list[str] = field(default_factory=list)
    streams: bool = False
    stream: list[dict[str, Any]] = field(default_factory=list)  # (table, record) pairs
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def region(self) -> str:
        return self.name

    def table(self, name: str) -> dict[ItemKey, Item]:
        return self.tables.setdefault(name, {})

    def item(self, table: str, key: ItemKey) -> Item | None:
        return self.table(table).get(key)

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        key = ItemKey.from_attributes({n: item[n] for n in self.key_names})
        return self._write(f"put {table}", table, key, dict(item), condition)

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        return self._write(f"delete {table}", table, key, None, condition)

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        self._before(f"get {table}")
        with self._lock:
            stored = self.table(table)
            return {key: dict(stored[key]) for key in keys if key in stored}

    def write_directly(self, table: str, key: ItemKey, item: Item | None) -> None:
        """An application's unconditional write (None: a delete)."""
        with self._lock:
            old = self.table(table).get(key)
            if item is None:
                self.table(table).pop(key, None)
            else:
                self.table(table)[key] = dict(item)
            self._record(table, key, old, item)

    def _record(self, table: str, key: ItemKey, old: Item | None, new: Item | None) -> None:
        """Append the stream record of a change (none when nothing was there or stays)."""
        if not self.streams or (old is None and new is None):
            return
        body: dict[str, Any] = {
            "Keys": key.to_attributes(),
            "SequenceNumber": str(10**20 + len(self.stream) + 1),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new is not None:
            body["NewImage"] = dict(new)
        if old is not None:
            body["OldImage"] = dict(old)
        event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        self.stream.append({"table": table, "eventName": event, "dynamodb": body})

    def _write(
        self, call: str, table: str, key: ItemKey, new: Item | None, condition: Condition
    ) -> StoreResult:
        self._before(call)
        with self._lock:
            stored = self.table(table)
            old = stored.get(key)
            if not condition.evaluate(old):
                return StoreResult(False, old)
            if new is None:
                stored.pop(key, None)
            else:
                stored[key] = new
            self._record(table, key, old, new)
        self.after_apply(self, call)
        return StoreResult(True, old)

    def _before(self, call: str) -> None:
        self.calls.append(call)
        self.before_call(self, call)
