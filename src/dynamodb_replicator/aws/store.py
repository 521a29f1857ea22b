"""The store port on DynamoDB: conditional PutItem/DeleteItem and consistent BatchGetItem."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.expressions import condition_kwargs
from dynamodb_replicator.core.conditions import Condition, render
from dynamodb_replicator.core.errors import ConditionFailedError
from dynamodb_replicator.core.model import Item, ItemKey
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.store import StoreResult

__all__ = ["DynamoStore"]


def _condition_kwargs(condition: Condition) -> dict[str, Any]:
    rendered = render(condition)
    return {} if rendered is None else condition_kwargs(rendered)


@dataclass(slots=True)
class DynamoStore:
    """One region's tables through a boto3 DynamoDB client; errors come out translated.

    Callers name tables by their logical names; ``tables`` maps the ones called otherwise
    in this region (``TableNames.in_region``) to their physical names."""

    client: Any
    name: str
    backoff: Backoff = field(default_factory=Backoff)
    tables: Mapping[str, str] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.name

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        return self._conditional(
            f"PutItem on {self._physical(table)}",
            self.client.put_item,
            TableName=self._physical(table),
            Item=dict(item),
            **_condition_kwargs(condition),
        )

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        return self._conditional(
            f"DeleteItem on {self._physical(table)}",
            self.client.delete_item,
            TableName=self._physical(table),
            Key=key.to_attributes(),
            **_condition_kwargs(condition),
        )

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        ordered = list(keys)
        if not ordered:
            return {}
        names = ordered[0].names()
        items = batch_get(
            self.client,
            self._physical(table),
            [key.to_attributes() for key in ordered],
            region=self.name,
            backoff=self.backoff,
        )
        return {ItemKey.from_attributes({n: item[n] for n in names}): item for item in items}

    def _physical(self, table: str) -> str:
        return self.tables.get(table, table)

    def _conditional(self, action: str, call: Any, **kwargs: Any) -> StoreResult:
        try:
            with translated(self.name, action):
                response = call(
                    ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs
                )
        except ConditionFailedError as failed:
            return StoreResult(False, failed.item or None)
        return StoreResult(True, response.get("Attributes") or None)
