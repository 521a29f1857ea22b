"""What a runner knows about one shard, per target region, as values; and those values
combined per (table, source, target) pair, the one way reports, ``status`` and the metrics
sum them. Pure.

The runner publishes a ShardReport for each shard it holds (to its metrics endpoint, and to
the state table, where ``status`` reads it). Counters count since the reporting worker took
the shard; gauges are the latest values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.runner.shardworker import ShardStats

__all__ = [
    "IDLE_AFTER_S",
    "Pair",
    "PairTotals",
    "ShardReport",
    "TargetReport",
    "add_counters",
    "pair_totals",
    "target_reports",
]

Pair = tuple[str, str, str]  # (table, source region, target region)

IDLE_AFTER_S = 10.0
"""A target with nothing waiting that accepted nothing for this long is idle: its lag is
"idle", not the frozen lag of its last change."""


@dataclass(frozen=True, slots=True)
class TargetReport:
    target: str
    counters: PairCounters = field(default_factory=PairCounters)
    lag_s: float | None = None
    stream_age_s: float | None = None
    backlog: int = 0
    backlog_more: bool = False
    advanced_at: float | None = None  # epoch seconds of the last accepted records
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass(frozen=True, slots=True)
class ShardReport:
    table: str
    source: str
    stream: str  # the stream label (the end of its ARN)
    shard_id: str
    worker: str
    updated_at: float  # epoch seconds
    done: bool
    targets: tuple[TargetReport, ...]


def add_counters(base: ShardReport, more: ShardReport) -> ShardReport:
    """``base`` with ``more``'s counters added per target (gauges: ``more``'s)."""
    earlier = {t.target: t for t in base.targets}
    targets = []
    for target in more.targets:
        old = earlier.pop(target.target, None)
        summed = target if old is None else replace(target, counters=old.counters + target.counters)
        targets.append(summed)
    return replace(more, targets=(*targets, *earlier.values()))


def target_reports(stats: ShardStats, targets: Iterable[str]) -> tuple[TargetReport, ...]:
    """Snapshot ``stats`` (written by another thread: every dict is copied once)."""
    counters, lag, age = dict(stats.counters), dict(stats.lag_s), dict(stats.stream_age_s)
    backlog, advanced = dict(stats.backlog), dict(stats.advanced_at)
    errors, error_at = dict(stats.last_error), dict(stats.last_error_at)
    more = dict(stats.backlog_more)
    return tuple(
        TargetReport(
            target,
            counters=counters.get(target, PairCounters()),
            lag_s=lag.get(target),
            stream_age_s=age.get(target),
            backlog=backlog.get(target, 0),
            backlog_more=more.get(target, False),
            advanced_at=advanced.get(target),
            last_error=errors.get(target),
            last_error_at=error_at.get(target),
        )
        for target in sorted(targets)
    )


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _idle(report: TargetReport, now: float) -> bool:
    quiet = report.advanced_at is None or now - report.advanced_at >= IDLE_AFTER_S
    return not report.backlog and quiet


def _unresolved(report: TargetReport) -> bool:
    """Does ``report``'s error still hold? Not once the target advanced after it: the record
    went through since (applied, or parked: ``status`` lists parked records apart)."""
    if not report.last_error or report.last_error_at is None:
        return False
    return report.advanced_at is None or report.advanced_at <= report.last_error_at


@dataclass(frozen=True, slots=True)
class PairTotals:
    """Shard reports of one pair combined: counters summed; gauges at their worst (largest
    lag, summed backlog, longest stall); the most recent error still unresolved; ``shards``
    reports. Idle shards add no lag: ``idle`` when every shard is."""

    counters: PairCounters = field(default_factory=PairCounters)
    shards: int = 0
    lag_s: float | None = None
    stream_age_s: float | None = None
    backlog: int = 0
    backlog_more: bool = False
    stalled_s: float | None = None  # since a shard with a backlog last advanced
    last_error: str | None = None
    last_error_at: float | None = None
    idle: bool = True

    def add(self, report: TargetReport, *, now: float) -> PairTotals:
        """These totals with ``report`` counted."""
        stalled = self.stalled_s
        if report.backlog and report.advanced_at is not None:
            stalled = _max(stalled, now - report.advanced_at)
        error, error_at = self.last_error, self.last_error_at
        at = report.last_error_at
        if _unresolved(report) and at is not None and (error_at is None or at > error_at):
            error, error_at = report.last_error, at
        idle = _idle(report, now)
        return PairTotals(
            self.counters + report.counters,
            self.shards + 1,
            self.lag_s if idle else _max(self.lag_s, report.lag_s),
            self.stream_age_s if idle else _max(self.stream_age_s, report.stream_age_s),
            self.backlog + report.backlog,
            self.backlog_more or report.backlog_more,
            stalled,
            error,
            error_at,
            self.idle and idle,
        )


def pair_totals(reports: Iterable[ShardReport], *, now: float) -> dict[Pair, PairTotals]:
    """Every pair of ``reports``, combined, in order."""
    pairs: dict[Pair, PairTotals] = {}
    for report in reports:
        for target in report.targets:
            key = (report.table, report.source, target.target)
            pairs[key] = pairs.get(key, PairTotals()).add(target, now=now)
    return dict(sorted(pairs.items()))
