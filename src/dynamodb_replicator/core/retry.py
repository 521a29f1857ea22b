"""Exponential backoff with full jitter. The schedule is pure; sleeping is injected."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock

__all__ = ["Backoff", "call_with_retries"]

T = TypeVar("T")

_MAX_DOUBLINGS = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays: attempt n waits uniform(0, ceiling(n)) seconds, ceiling(n) = min(cap, base * 2**n).

    Callers that wait alone (one cursor, one poll loop: no herd to spread) wait the ceiling.
    """

    attempts: int = 8
    base: float = 0.05
    cap: float = 2.0
    rng: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt`` (0-based): it doubles up to ``cap``."""
        # The exponent is bounded so that a long outage cannot overflow the float.
        return min(self.cap, self.base * 2.0 ** min(attempt, _MAX_DOUBLINGS))

    def delay(self, attempt: int) -> float:
        """A jittered wait before attempt ``attempt``: uniform(0, ceiling(attempt))."""
        return self.rng(0.0, self.ceiling(attempt))


def call_with_retries(
    call: Callable[[], T],
    backoff: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[ReplicatorError, int], None] | None = None,
    stop: threading.Event | None = None,
    clock: Clock | None = None,
) -> T:
    """Run ``call``; retry retryable ReplicatorErrors with backoff, re-raise the last one.

    When ``stop`` is set (shutting down), the last error is raised at once instead of
    waiting for the next attempt. With a ``clock`` (the ``Clock`` port) every wait goes by
    on it, ``stop`` included; else on the real clock (``sleep``, or ``stop``'s own wait).
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
            delay = backoff.delay(attempt - 1)
            if clock is not None:
                if clock.wait(delay, stop):
                    raise
            elif stop is None:
                sleep(delay)
            elif stop.wait(delay):
                raise
