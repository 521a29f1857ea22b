"""Strongly consistent BatchGetItem of any number of keys."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.retry import Backoff, call_with_retries

__all__ = ["batch_get", "write_batch"]

_LIMIT = 100


def _call(client: Any, region: str, table: str, request: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(client.batch_get_item(RequestItems=request))
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region, f"BatchGetItem on {table}") from exc


def batch_get(
    client: Any,
    table: str,
    keys: Sequence[dict[str, Any]],
    *,
    region: str,
    backoff: Backoff | None = None,
) -> list[dict[str, Any]]:
    """Items found for ``keys`` (100 per call); errors are retried with backoff, and
    unprocessed keys (throttling) are asked for again after a growing pause."""
    backoff = backoff or Backoff()
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), _LIMIT):
        request: dict[str, Any] = {
            table: {"Keys": list(keys[start : start + _LIMIT]), "ConsistentRead": True}
        }
        for attempt in itertools.count():
            response = call_with_retries(
                functools.partial(_call, client, region, table, request), backoff
            )
            found.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(backoff.delay(min(attempt, 10)))
    return found


def write_batch(
    client: Any,
    table: str,
    items: Sequence[dict[str, Any]],
    *,
    region: str,
    backoff: Backoff | None = None,
) -> None:
    """BatchWriteItem of up to 25 items; unprocessed items (throttling) are sent again after
    a growing pause until all are written."""
    backoff = backoff or Backoff()
    requests: list[dict[str, Any]] = [{"PutRequest": {"Item": item}} for item in items]

    def call(pending: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            return dict(client.batch_write_item(RequestItems={table: pending}))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, region, f"BatchWriteItem on {table}") from exc

    for attempt in itertools.count():
        response = call_with_retries(functools.partial(call, requests), backoff)
        requests = (response.get("UnprocessedItems") or {}).get(table, [])
        if not requests:
            return
        time.sleep(backoff.delay(min(attempt, 10)))
