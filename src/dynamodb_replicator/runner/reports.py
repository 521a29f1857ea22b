"""What a runner knows about one shard, per target region, as values. Pure.

The runner publishes a ShardReport for each shard it holds (to its metrics endpoint, and to
the state table, where ``status`` reads it). Counters count since the reporting worker took
the shard; gauges are the latest values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from dynamodb_replicator.runner.shardworker import ShardStats

__all__ = [
    "PairStats",
    "ShardReport",
    "TargetReport",
    "add_counters",
    "pair_totals",
    "target_reports",
]


@dataclass(frozen=True, slots=True)
class TargetReport:
    target: str
    applied: int = 0
    stale: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0
    won: int = 0
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


_COUNTERS = ("applied", "stale", "failed", "retried", "lost", "won")


def add_counters(base: ShardReport, more: ShardReport) -> ShardReport:
    """``base`` with ``more``'s counters added per target (gauges: ``more``'s)."""
    earlier = {t.target: t for t in base.targets}
    targets = []
    for target in more.targets:
        old = earlier.pop(target.target, None)
        if old is None:
            targets.append(target)
            continue
        sums = {name: getattr(old, name) + getattr(target, name) for name in _COUNTERS}
        targets.append(replace(target, **sums))
    return replace(more, targets=(*targets, *earlier.values()))


def target_reports(stats: ShardStats, targets: Iterable[str]) -> tuple[TargetReport, ...]:
    """Snapshot ``stats`` (written by another thread: every dict is copied once)."""
    applied, stale, failed = dict(stats.applied), dict(stats.stale), dict(stats.failed)
    retried, lost, won = dict(stats.retried), dict(stats.lost), dict(stats.won)
    lag, age, backlog = dict(stats.lag_s), dict(stats.stream_age_s), dict(stats.backlog)
    advanced, errors, error_at = (
        dict(stats.advanced_at),
        dict(stats.last_error),
        dict(stats.last_error_at),
    )
    more = stats.backlog_more
    return tuple(
        TargetReport(
            target,
            applied.get(target, 0),
            stale.get(target, 0),
            failed.get(target, 0),
            retried.get(target, 0),
            lost.get(target, 0),
            won.get(target, 0),
            lag.get(target),
            age.get(target),
            backlog.get(target, 0),
            more,
            advanced.get(target),
            errors.get(target),
            error_at.get(target),
        )
        for target in sorted(targets)
    )


@dataclass(frozen=True, slots=True)
class PairStats:
    """Progress of one (source region, target region) pair, summed over tables and shards."""

    source: str
    target: str
    applied: int = 0
    stale: int = 0
    failed: int = 0
    lag_s: float | None = None
    last_error: str | None = None
    lost: int = 0
    won: int = 0


def pair_totals(reports: Iterable[ShardReport]) -> list[PairStats]:
    """Sum shard reports per (source, target); lag is the largest, the error the last seen."""
    pairs: dict[tuple[str, str], PairStats] = {}
    for report in reports:
        for t in report.targets:
            key = (report.source, t.target)
            p = pairs.get(key, PairStats(*key))
            lag = p.lag_s if t.lag_s is None else max(p.lag_s or 0.0, t.lag_s)
            pairs[key] = PairStats(
                p.source,
                p.target,
                p.applied + t.applied,
                p.stale + t.stale,
                p.failed + t.failed,
                lag,
                t.last_error or p.last_error,
                p.lost + t.lost,
                p.won + t.won,
            )
    return [pairs[key] for key in sorted(pairs)]
