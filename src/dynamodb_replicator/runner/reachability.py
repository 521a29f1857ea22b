"""Which configured regions the runner can reach, and when to try the others again.

A region is *down* from the first time it could not be reached (no connection, or timeouts,
still after the quick retries of ``TRANSIENT``) until a check of it succeeds. The runner then
neither reads that region's streams nor writes into it; the other pairs go on. A down region
is checked again on the one Backoff's schedule (``ceiling`` of the number of failed checks),
so an outage of hours costs one check every ``cap`` seconds.

A region that answers, if only with a throttle or an HTTP 5xx, is not down: marking it so
would stop every pair from and into it, and its lease renewals, for one busy answer. Its
requests are retried (``retried`` counts them) and its pairs go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff

__all__ = ["TRANSIENT", "Down", "Reachability"]

log = logging.getLogger(__name__)

TRANSIENT = Backoff(attempts=4, base=0.05, cap=0.5)
"""The quick retries that tell a transient error (a throttle, an HTTP 5xx, a dropped
connection, one answer too slow) from an outage: what still cannot connect after them is one.
Under half a second of waiting in all, so a coordination round is not held up."""


@dataclass(frozen=True, slots=True)
class Down:
    """A region the runner cannot reach: since when, why, when to check it again."""

    since: float
    reason: str
    checks: int = 1
    next_check: float = 0.0


class Reachability:
    """The down regions; read by the shard threads, the metrics and the coordinator."""

    def __init__(self, clock: Clock, backoff: Backoff | None = None) -> None:
        self.clock = clock
        self.backoff = backoff or Backoff(base=0.5, cap=10.0)
        self._down: dict[str, Down] = {}
        self._retries: dict[str, int] = {}  # region -> requests retried (``retried``)
        self._lock = threading.Lock()

    def failed(self, region: str, reason: str) -> None:
        """A request to ``region`` (or a check of it) failed for lack of reachability."""
        now = self.clock.now()
        with self._lock:
            earlier = self._down.get(region)
            checks = 1 if earlier is None else earlier.checks + 1
            down = Down(now, reason) if earlier is None else replace(earlier, reason=reason)
            self._down[region] = replace(
                down, checks=checks, next_check=now + self.backoff.ceiling(checks - 1)
            )
        if earlier is None:
            log.warning(
                "region unreachable: replication from and into it waits; checked again "
                "in the background",
                extra={"region": region, "reason": reason},
            )

    def retried(self, region: str) -> None:
        """A request to ``region`` failed transiently and is tried again: counted (the
        metrics' ``discovery_retries_total``), and the region stays up."""
        with self._lock:
            self._retries[region] = self._retries.get(region, 0) + 1

    def retries(self) -> dict[str, int]:
        """region -> requests retried since this process started."""
        with self._lock:
            return dict(self._retries)

    def reached(self, region: str) -> bool:
        """``region`` answered; True when it was down until now."""
        with self._lock:
            earlier = self._down.pop(region, None)
        if earlier is not None:
            log.info(
                "region reachable again: its pairs resume",
                extra={"region": region, "down_s": round(self.clock.now() - earlier.since, 1)},
            )
        return earlier is not None

    def is_up(self, region: str) -> bool:
        return region not in self._down

    def due(self) -> list[str]:
        """The down regions whose next check is due."""
        now = self.clock.now()
        with self._lock:
            return [name for name, down in self._down.items() if down.next_check <= now]

    def down(self) -> dict[str, Down]:
        """A copy of the down regions."""
        with self._lock:
            return dict(self._down)

    def keep_only(self, regions: Iterable[str]) -> None:
        """Forget regions no longer configured."""
        keep = set(regions)
        with self._lock:
            self._down = {name: d for name, d in self._down.items() if name in keep}

    def states(self, regions: Iterable[str]) -> Mapping[str, bool]:
        """region -> reachable, for the metrics."""
        down = self.down()
        return {name: name not in down for name in regions}
