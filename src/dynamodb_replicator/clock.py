"""The system clock: the one implementation of the core's ``Clock`` port.

It sits at the top of the package, beside no adapter folder, because every shell part needs
it (the runner and its shard workers, the Lambda, the boto3 writer's tombstone expiry, the
CLI) and none of them should import another's folder to get the time.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SystemClock"]


class SystemClock:
    """Seconds since the epoch, from ``time.time``; elapsed time from ``time.monotonic``."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        return time.time()

    def elapsed(self) -> float:
        """Seconds from an arbitrary origin on the monotonic clock: a wait measured on it
        is neither cut short nor stretched when the wall clock steps (NTP, an operator)."""
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep ``seconds`` (cut short by ``stop``); True when ``stop`` is set."""
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)
