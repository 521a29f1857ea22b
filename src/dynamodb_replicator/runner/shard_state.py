"""The values a shard worker shares: the ``Process`` port it applies pages with, its
cursors, and the stats it publishes per target (read by reports, metrics and status)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.runner.page_size import PageSize
from dynamodb_replicator.runner.pipeline import Flight

__all__ = ["Cursor", "LagObserver", "Process", "ShardStats", "error_at"]


class Process(Protocol):
    """Apply records of a table to some targets (``Replicator.process``); ``logged`` tells
    the conflicts an earlier attempt logged already; ``written`` is called once the writes
    are done and only their settling is left; ``ready`` before each target's writes, once
    that target's reads are done (its writes wait until it returns; raising, it starts no
    more of them)."""

    def __call__(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult: ...


# Told the lag (seconds) of every page a target accepted, e.g. to feed a histogram.
LagObserver = Callable[[str, float], None]


@dataclass(slots=True)
class Cursor:
    targets: set[str]
    position: str | None  # last SequenceNumber handled; None: from TRIM_HORIZON
    # Its own: a split cursor's misses must not be undone by the pages of the cursors
    # that keep up (a size shared by all would double back before its next retry).
    size: PageSize
    iterator: str | None = None
    retry_at: float = 0.0
    failures: int = 0
    # The pages past ``position`` being applied, oldest first (runner/pipeline.py).
    inflight: tuple[Flight, ...] = ()
    read_at: float = 0.0  # when it last read (``clock.elapsed``): paces the next read


@dataclass(slots=True)
class ShardStats:
    """Counters and gauges per target region, read by metrics, progress and status.

    Written only by the shard's thread; readers copy the dicts.
    """

    counters: dict[str, PairCounters] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    last_error_at: dict[str, float] = field(default_factory=dict)
    lag_s: dict[str, float] = field(default_factory=dict)
    stream_age_s: dict[str, float] = field(default_factory=dict)
    advanced_at: dict[str, float] = field(default_factory=dict)
    # From positions (runner/positions.py): records known beyond each target's checkpoint,
    # and whether more may wait.
    backlog: dict[str, int] = field(default_factory=dict)
    backlog_more: dict[str, bool] = field(default_factory=dict)
    records: int = 0
    echoes: int = 0


def error_at(result: BatchResult, target: str, sequence: str) -> ReplicatorError | None:
    """Why ``target`` failed at ``sequence``: the record itself, or the target's write."""
    for failure in result.record_failures:
        if failure.sequence_number == sequence:
            return failure.error
    outcome = result.targets.get(target)
    if outcome is not None and outcome.error is not None:
        return outcome.error
    return result.record_failures[0].error if result.record_failures else None
