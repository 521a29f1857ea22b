"""The store port on DynamoDB: conditional PutItem/DeleteItem and consistent BatchGetItem."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.core.conditions import Condition, render
from dynamodb_replicator.core.model import Item, ItemKey
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.store import StoreResult

__all__ = ["DynamoStore"]

_FAILED = "ConditionalCheckFailedException"


def _condition_kwargs(condition: Condition) -> dict[str, Any]:
    rendered = render(condition)
    if rendered is None:
        return {}
    kwargs: dict[str, Any] = {
        "ConditionExpression": rendered.expression,
        "ExpressionAttributeNames": dict(rendered.names),
    }
    if rendered.values:
        kwargs["ExpressionAttributeValues"] = dict(rendered.values)
    return kwargs


@dataclass(slots=True)
class DynamoStore:
    """One region's tables through a boto3 DynamoDB client; errors come out translated."""

    client: Any
    name: str
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def region(self) -> str:
        return self.name

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        return self._conditional(
            f"PutItem on {table}",
            self.client.put_item,
            TableName=table,
            Item=dict(item),
            **_condition_kwargs(condition),
        )

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        return self._conditional(
            f"DeleteItem on {table}",
            self.client.delete_item,
            TableName=table,
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
            table,
            [key.to_attributes() for key in ordered],
            region=self.name,
            backoff=self.backoff,
        )
        return {ItemKey.from_attributes({n: item[n] for n in names}): item for item in items}

    def _conditional(self, action: str, call: Any, **kwargs: Any) -> StoreResult:
        try:
            response = call(
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs
            )
        except ClientError as exc:
            if error_code(exc) == _FAILED:
                return StoreResult(False, exc.response.get("Item") or None)
            raise translate(exc, self.name, action) from exc
        except BotoCoreError as exc:
            raise translate(exc, self.name, action) from exc
        return StoreResult(True, response.get("Attributes") or None)
