"""The runner's Prometheus metrics, computed from its shard reports at scrape time. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from dynamodb_replicator.observe.metrics import Family, Sample
from dynamodb_replicator.runner.reports import ShardReport, TargetReport

__all__ = ["PREFIX", "runner_families"]

PREFIX = "dynamodb_replicator"

_COUNTERS: tuple[tuple[str, str, Callable[[TargetReport], int]], ...] = (
    ("applied_total", "changes applied to the target", lambda t: t.applied),
    ("stale_total", "changes the target rejected as older than what it holds", lambda t: t.stale),
    ("failed_total", "writes that failed after their retries (retried later)", lambda t: t.failed),
    ("retried_total", "write attempts retried after a retryable error", lambda t: t.retried),
)


def _pair(report: ShardReport, target: str) -> tuple[str, str, str]:
    return (report.table, report.source, target)


def _labels(pair: tuple[str, str, str]) -> dict[str, str]:
    return {"table": pair[0], "source": pair[1], "target": pair[2]}


def runner_families(
    reports: Sequence[tuple[ShardReport, bool]], *, worker: str, now: float
) -> list[Family]:
    """Families from every shard report of this process; ``True`` marks shards it holds now
    (gauges come from those; counters from all, so they never go down)."""
    counters: dict[str, dict[tuple[str, str, str], float]] = defaultdict(lambda: defaultdict(int))
    conflicts: dict[tuple[str, str, str, str], float] = defaultdict(int)
    lag: dict[tuple[str, str, str], float] = {}
    age: dict[tuple[str, str, str], float] = {}
    backlog: dict[tuple[str, str, str], float] = defaultdict(int)
    stalled: dict[tuple[str, str, str], float] = defaultdict(float)
    owned: dict[tuple[str, str], float] = defaultdict(int)
    leases: list[Sample] = []
    for report, held in reports:
        if held:
            owned[(report.table, report.source)] += 1
            leases.append(
                Sample(
                    {"table": report.table, "source": report.source, "shard": report.shard_id}, 1
                )
            )
        for target in report.targets:
            pair = _pair(report, target.target)
            for name, _, read in _COUNTERS:
                counters[name][pair] += read(target)
            conflicts[(*pair, "lost")] += target.lost
            conflicts[(*pair, "won")] += target.won
            if not held:
                continue
            backlog[pair] += target.backlog
            if target.lag_s is not None:
                lag[pair] = max(lag.get(pair, 0.0), target.lag_s)
            if target.stream_age_s is not None:
                age[pair] = max(age.get(pair, 0.0), target.stream_age_s)
            if target.backlog and target.advanced_at is not None:
                stalled[pair] = max(stalled[pair], now - target.advanced_at)
            else:
                stalled.setdefault(pair, 0.0)
    families = [
        Family(
            f"{PREFIX}_{name}",
            "counter",
            help_text,
            [Sample(_labels(pair), value) for pair, value in sorted(counters[name].items())],
        )
        for name, help_text, _ in _COUNTERS
    ]
    families += [
        Family(
            f"{PREFIX}_conflicts_total",
            "counter",
            "changes that lost, or won over a concurrent version (outcome label)",
            [
                Sample({**_labels((t, s, g)), "outcome": o}, v)
                for (t, s, g, o), v in sorted(conflicts.items())
            ],
        ),
        _gauge("lag_seconds", "age (by __timestamp) of the newest change applied", lag),
        _gauge("stream_age_seconds", "age (by stream record time) of the last record applied", age),
        _gauge("backlog_records", "records read from the stream, not yet applied", backlog),
        _gauge("stalled_seconds", "time since a target with a backlog last advanced", stalled),
        Family(
            f"{PREFIX}_shards_owned",
            "gauge",
            f"shards whose lease this worker ({worker}) holds",
            [Sample({"table": t, "source": s, "worker": worker}, v) for (t, s), v in owned.items()],
        ),
        Family(f"{PREFIX}_lease_held", "gauge", "1 for each shard this worker holds", leases),
    ]
    return families


def _gauge(name: str, help_text: str, values: dict[tuple[str, str, str], float]) -> Family:
    return Family(
        f"{PREFIX}_{name}",
        "gauge",
        help_text,
        [Sample(_labels(pair), value) for pair, value in sorted(values.items())],
    )
