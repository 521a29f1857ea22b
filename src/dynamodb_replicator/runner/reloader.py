"""Picking up an edited config file (``add-region`` appends a region to it).

The new configuration is checked like at start; until it loads and passes, the runner
keeps the one it runs with and tries again, backing off.
"""

from __future__ import annotations

import logging
import os

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.preflight import Checked, Checks

__all__ = ["Reloader"]

log = logging.getLogger(__name__)


def _stamp(path: str | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


class Reloader:
    """Watches ``path``; ``changed`` returns a new configuration that loaded and passed."""

    def __init__(self, path: str | None, clock: Clock, checks: Checks) -> None:
        self.path, self.clock, self.checks = path, clock, checks
        self._stamp = _stamp(path)
        self._backoff = Backoff(base=1.0, cap=30.0)
        self._failures = 0
        self._at = 0.0

    def changed(self, current: RunnerConfig) -> tuple[RunnerConfig, Checked] | None:
        """The file's configuration when it was edited, differs from ``current`` and
        passes the checks; None otherwise (a failure is tried again later)."""
        stamp = _stamp(self.path)
        if self.path is None or stamp == self._stamp or self.clock.now() < self._at:
            return None
        try:
            config = load_config(self.path)
            checked = None if config == current else self.checks.all(config)
        except ReplicatorError as exc:
            self._failures += 1
            delay = self._backoff.ceiling(self._failures - 1)
            self._at = self.clock.now() + delay
            log.error(
                "config reload failed; keeping the running configuration, trying again",
                extra={"reason": str(exc), "retry_in_s": delay},
            )
            return None
        # Only a file that loaded counts as seen: a failure above is tried again.
        self._stamp, self._failures = stamp, 0
        return None if checked is None else (config, checked)
