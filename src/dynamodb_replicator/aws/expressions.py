"""Rendered conditions as boto3 keyword arguments: the API's parameter names live here,
in the adapter, not in ``core.conditions``."""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.core.conditions import Rendered

__all__ = ["condition_kwargs"]


def condition_kwargs(rendered: Rendered) -> dict[str, Any]:
    """``ConditionExpression`` and its placeholders, for PutItem, DeleteItem, UpdateItem
    and a transaction's Put, Delete or ConditionCheck."""
    kwargs: dict[str, Any] = {
        "ConditionExpression": rendered.expression,
        "ExpressionAttributeNames": dict(rendered.names),
    }
    if rendered.values:  # DynamoDB rejects an empty ExpressionAttributeValues
        kwargs["ExpressionAttributeValues"] = dict(rendered.values)
    return kwargs
