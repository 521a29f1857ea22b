"""Batch calls that finish what the server leaves unprocessed: BatchGetItem of any number
of keys (strongly consistent), BatchWriteItem of up to 25 items."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.core.retry import Backoff, call_with_retries

__all__ = ["batch_get", "write_batch"]

_LIMIT = 100


def _until_processed(
    client_call: Callable[..., Any],
    request: dict[str, Any],
    unprocessed: str,
    *,
    region: str,
    action: str,
    backoff: Backoff,
) -> Iterator[dict[str, Any]]:
    """Send ``request``; while the answer leaves part of it ``unprocessed`` (throttling),
    send that part again after a growing pause. Yields every answer."""

    def send(items: dict[str, Any]) -> dict[str, Any]:
        with translated(region, action):
            return dict(client_call(RequestItems=items))

    for attempt in itertools.count():
        response = call_with_retries(functools.partial(send, request), backoff)
        yield response
        request = response.get(unprocessed) or {}
        if not request:
            return
        time.sleep(backoff.delay(min(attempt, 10)))


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
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), _LIMIT):
        request = {table: {"Keys": list(keys[start : start + _LIMIT]), "ConsistentRead": True}}
        for response in _until_processed(
            client.batch_get_item,
            request,
            "UnprocessedKeys",
            region=region,
            action=f"BatchGetItem on {table}",
            backoff=backoff or Backoff(),
        ):
            found.extend(response.get("Responses", {}).get(table, []))
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
    request = {table: [{"PutRequest": {"Item": item}} for item in items]}
    for _ in _until_processed(
        client.batch_write_item,
        request,
        "UnprocessedItems",
        region=region,
        action=f"BatchWriteItem on {table}",
        backoff=backoff or Backoff(),
    ):
        pass
