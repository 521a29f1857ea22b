"""Picking up an edited config file (``add-region`` appends a region to it).

The new configuration is checked like at start; until it loads and passes, the runner
keeps the one it runs with and tries again, backing off. A change of regions and tables
only (``reshape``) starts and stops only the pairs it concerns (docs/concepts/reload.md);
any other change restarts every shard worker from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.preflight import Checked, Checks

__all__ = ["Reloader", "Reshape", "reshape"]

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


@dataclass(frozen=True, slots=True)
class Reshape:
    """What a reload changes that running shard workers can take up without a restart."""

    added: tuple[str, ...] = ()  # regions new in the configuration
    removed: tuple[str, ...] = ()  # regions no longer in it
    changed: tuple[str, ...] = ()  # regions whose endpoint or role changed
    stale_tables: frozenset[str] = frozenset()  # tables removed, or renamed in a region


def reshape(old: RunnerConfig, new: RunnerConfig) -> Reshape | None:
    """The regions and tables ``new`` adds, removes or changes; None when it changes
    anything else (every shard worker restarts from its checkpoint, the leases kept).

    Only regions, tables and the tables' physical names may differ, and the request
    timeout and lifetime must stay what the running workers' clients and leases were
    built for (a derived timeout moves with the number of regions: then all restart)."""
    names = dataclasses.replace(new.replication, names=old.replication.names)
    rest = dataclasses.replace(new, regions=old.regions, tables=old.tables, replication=names)
    if rest != old or (new.request_timeout, new.request_lifetime) != (
        old.request_timeout,
        old.request_lifetime,
    ):
        return None
    before = {spec.name: spec for spec in old.regions}
    after = {spec.name: spec for spec in new.regions}
    every = sorted(before.keys() | after.keys())
    stale = {
        table
        for table in old.tables
        if table not in new.tables
        or any(
            old.replication.names.physical(table, r) != new.replication.names.physical(table, r)
            for r in every
        )
    }
    return Reshape(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(n for n in before if n in after and before[n] != after[n]),
        stale_tables=frozenset(stale),
    )
