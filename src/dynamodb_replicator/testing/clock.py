"""A clock a test moves by hand: the one fake of the core's ``Clock`` port."""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]


class ManualClock:
    """Reads ``t`` (seconds since the epoch), which only the test moves. It never steps:
    its monotonic reading is its ``now`` (a test of a step subclasses it)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def now(self) -> float:
        """``t``."""
        return self.t

    def elapsed(self) -> float:
        """The same reading as ``now``: this clock never steps."""
        return self.now()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """No time goes by, real or simulated (only the test moves ``t``): a retry's wait
        costs a simulation nothing, and its outcome does not hang on a random delay.
        True when ``stop`` is set."""
        return stop is not None and stop.is_set()
