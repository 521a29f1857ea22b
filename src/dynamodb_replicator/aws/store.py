"""The store port on DynamoDB: conditional PutItem/DeleteItem and consistent BatchGetItem."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.aws.errors import translate
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
        physical = self._physical(table)
        return self._conditional(
            "PutItem",
            self.client.put_item,
            TableName=physical,
            Item=dict(item),
            **_condition_kwargs(condition),
        )

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        physical = self._physical(table)
        return self._conditional(
            "DeleteItem",
            self.client.delete_item,
            TableName=physical,
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

    def _conditional(self, operation: str, call: Any, **kwargs: Any) -> StoreResult:
        # ``translate`` itself, not the ``translated`` block: a context manager is a
        # generator per write, and the action's text is only needed for an error.
        try:
            response = call(
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs
            )
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, self.name, f"{operation} on {kwargs['TableName']}")
            if isinstance(error, ConditionFailedError):
                return StoreResult(False, error.item or None)
            raise error from exc
        except ConditionFailedError as failed:  # a client that raises it already translated
            return StoreResult(False, failed.item or None)
        return StoreResult(True, response.get("Attributes") or None)
