"""Which configured regions the runner can reach, and when to try the others again.

A region is *down* from the first time it could not be reached (a retryable error that
outlasted its retries, or a timeout) until a check of it succeeds. The runner then neither
reads that region's streams nor writes into it; the other pairs go on. A down region is
checked again on the one Backoff's schedule (``ceiling`` of the number of failed checks), so
an outage of hours costs one check every ``cap`` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff

__all__ = ["Down", "Reachability"]

log = logging.getLogger(__name__)


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
