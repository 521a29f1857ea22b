"""Exponential backoff with full jitter. The schedule is pure; sleeping is injected."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from dynamodb_replicator.core.errors import ReplicatorError

__all__ = ["Backoff", "call_with_retries"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays: attempt n waits uniform(0, min(cap, base * 2**n)) seconds."""

    attempts: int = 8
    base: float = 0.05
    cap: float = 2.0
    rng: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def delay(self, attempt: int) -> float:
        return self.rng(0.0, min(self.cap, self.base * (2**attempt)))


def call_with_retries(
    call: Callable[[], T],
    backoff: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[ReplicatorError, int], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run ``call``; retry retryable ReplicatorErrors with backoff, re-raise the last one.

    When ``stop`` is set (shutting down), the last error is raised at once instead of
    waiting for the next attempt.
    """
    attempt = 0
    while True:
        try:
            return call()
        except ReplicatorError as exc:
            attempt += 1
            if not exc.retryable or attempt >= backoff.attempts:
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            if stop is None:
                sleep(backoff.delay(attempt - 1))
            elif stop.wait(backoff.delay(attempt - 1)):
                raise
