"""The base of the state table's store (aws/state.py): the client and its retried calls,
the items' keys, and the ``cp|`` items' reading, shared by the store's parts (checkpoints,
scan progress and notes, leases, worker claims)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.scan import scan_prefix
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import ShardRef

__all__ = ["StateTable", "attr", "lease_id", "stored_positions"]

T = TypeVar("T")


class StateTable:
    """One region's state table (``table``, through ``client``), and the leases this store
    acquired (``_held``)."""

    def __init__(
        self,
        client: Any,
        table: str,
        region: str,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        *,
        held: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.region = region
        self.backoff = backoff or Backoff()
        self.stop = stop  # set on shutdown: retries give up at once
        # Leases this store acquired: shard -> (owner, token). Checkpoint saves name both.
        # ``held``: shared with another store of the same process (the runner renews
        # through a client of its own, and saves checkpoints through this one).
        self._held: dict[str, tuple[str, str]] = {} if held is None else held

    def _call(self, action: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            with translated(self.region, f"{action} on {self.table}"):
                return call()

        return call_with_retries(attempt, self.backoff, stop=self.stop)

    def _lease_key(self, shard: ShardRef) -> dict[str, Any]:
        return {"pk": {"S": f"lease|{lease_id(shard)}"}}

    def _load_positions(self, name: str) -> dict[str, str]:
        key = {"pk": {"S": f"cp|{name}"}}
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True),
        ).get("Item", {})
        return stored_positions(item)

    def put(self, item: Mapping[str, Any]) -> None:
        """Write one whole item (the runner's shard reports)."""
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=dict(item)))

    def scan(self, prefix: str) -> list[dict[str, Any]]:
        """Every item whose key starts with ``prefix`` (strongly consistent)."""
        return scan_prefix(self._call, self.client, self.table, prefix)


def lease_id(shard: ShardRef) -> str:
    """The shard's part of its lease item's key."""
    return f"{shard.table}|{shard.stream_label}|{shard.shard_id}"


def attr(item: Mapping[str, Any], name: str, kind: str) -> str | None:
    """An attribute's value as stored (its DynamoDB type ``kind``), None when absent."""
    value: str | None = item.get(name, {}).get(kind)
    return value


def stored_positions(item: Mapping[str, Any]) -> dict[str, str]:
    """target -> position, from an item's ``pos#TARGET`` attributes."""
    return {
        name.split("#", 1)[1]: value["S"] for name, value in item.items() if name.startswith("pos#")
    }
