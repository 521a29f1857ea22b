"""Strongly consistent BatchGetItem of any number of keys."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from typing import Any

from dynamodb_replicator.aws.errors import call_translated
from dynamodb_replicator.retry import Backoff, call_with_retries

__all__ = ["batch_get", "write_batch"]

_LIMIT = 100


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
                functools.partial(
                    call_translated,
                    region,
                    f"BatchGetItem on {table}",
                    client.batch_get_item,
                    RequestItems=request,
                ),
                backoff,
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

    for attempt in itertools.count():
        response = call_with_retries(
            functools.partial(
                call_translated,
                region,
                f"BatchWriteItem on {table}",
                client.batch_write_item,
                RequestItems={table: requests},
            ),
            backoff,
        )
        requests = (response.get("UnprocessedItems") or {}).get(table, [])
        if not requests:
            return
        time.sleep(backoff.delay(min(attempt, 10)))
