"""Parallel Scan with per-segment resume points and an optional rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.core.retry import Backoff, call_with_retries

__all__ = ["RateLimiter", "parallel_scan"]

Page = list[dict[str, Any]]
# (segment, items of one page, resume key after this page or None when the segment is done)
OnPage = Callable[[int, Page, dict[str, Any] | None], None]


class RateLimiter:
    """A token bucket: at most ``per_second`` units on average, bursts of one second."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.per_second = per_second
        self.clock = clock
        # A wait for tokens ends early when ``stop`` is set (Ctrl-C): the caller checks it.
        self.stop = stop or threading.Event()
        self.tokens = per_second or 0.0
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self, units: float) -> None:
        if not self.per_second:
            return
        with self.lock:
            now = self.clock()
            self.tokens = min(self.per_second, self.tokens + (now - self.stamp) * self.per_second)
            self.stamp = now
            self.tokens -= units
            wait = -self.tokens / self.per_second if self.tokens < 0 else 0.0
        if wait > 0:
            self.stop.wait(wait)


def parallel_scan(
    client: Any,
    table: str,
    *,
    region: str,
    segments: int,
    on_page: OnPage,
    resume: Mapping[int, dict[str, Any] | None] | None = None,
    skip: frozenset[int] = frozenset(),
    consistent: bool = True,
    page_size: int = 500,
    stop: threading.Event | None = None,
) -> None:
    """Scan ``table`` in ``segments`` threads; ``on_page`` runs in the segment's thread.

    ``resume`` gives a start key per segment; segments in ``skip`` are already done.
    Memory: one page per segment at a time.
    """
    backoff = Backoff()

    def scan_segment(segment: int) -> None:
        start = (resume or {}).get(segment)
        while stop is None or not stop.is_set():
            kwargs: dict[str, Any] = {
                "TableName": table,
                "Segment": segment,
                "TotalSegments": segments,
                "ConsistentRead": consistent,
                "Limit": page_size,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start

            def call(arguments: dict[str, Any] = kwargs) -> dict[str, Any]:
                with translated(region, f"Scan {table}"):
                    return dict(client.scan(**arguments))

            page = call_with_retries(call, backoff)
            start = page.get("LastEvaluatedKey")
            on_page(segment, page.get("Items", []), start)
            if not start:
                return

    with ThreadPoolExecutor(max_workers=segments) as pool:
        futures = [pool.submit(scan_segment, s) for s in range(segments) if s not in skip]
        for future in futures:
            future.result()


def scan_prefix(
    call: Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]],
    client: Any,
    table: str,
    prefix: str,
) -> list[dict[str, Any]]:
    """Every item of ``table`` whose ``pk`` starts with ``prefix`` (strongly consistent),
    each page read through ``call`` (the caller's translated, retried request)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "FilterExpression": "begins_with(pk, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": prefix}},
    }
    while True:
        page = call("Scan", lambda k=dict(kwargs): client.scan(**k))  # type: ignore[misc]
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
