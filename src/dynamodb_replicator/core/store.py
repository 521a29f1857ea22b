"""The store port: the handful of calls the write protocol makes on one region's tables.

Each call is one DynamoDB request (a batched read may take a few to finish what the server
left unprocessed). Conditions are condition trees (``core.conditions``); the adapter renders
them, the in-memory store of the tests evaluates them, so both see the same rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.model import Item, ItemKey

__all__ = ["Store", "StoreResult"]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a conditional write did.

    ``applied`` is False when the condition failed. ``item`` is the item as it was before
    the call (DynamoDB's ALL_OLD): the replaced or deleted item when applied, the item that
    made the condition fail otherwise; None when there was none.
    """

    applied: bool
    item: Item | None = None


class Store(Protocol):
    """One region's tables. Errors come out as ``core.errors`` types."""

    @property
    def region(self) -> str: ...

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        """PutItem where ``condition`` holds on the stored item (absent counts as an item
        with no attributes)."""
        ...

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        """DeleteItem where ``condition`` holds on the stored item."""
        ...

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        """Strongly consistent reads of ``keys``; keys not found are absent from the result."""
        ...
