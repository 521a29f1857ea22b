"""Shard reports as state-table items, so ``status`` can read what every runner knows.

One item per shard, ``pk = stats|TABLE|STREAM|SHARD``, overwritten by the worker holding the
shard every coordination round; one map attribute ``t#TARGET`` per target region.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.runner.reports import ShardReport, TargetReport

__all__ = ["PREFIX", "report_from_item", "report_to_item"]

PREFIX = "stats|"

# Each counter is its own number beside the gauges, so items stay readable both ways
# between versions (a counter missing from an item reads as 0).
_COUNTERS = tuple(f.name for f in fields(PairCounters))
_TIMES = ("lag_s", "stream_age_s", "advanced_at", "last_error_at")
_ERROR_LIMIT = 500  # characters: an error message, not a dump


def _target_to_map(target: TargetReport) -> dict[str, Any]:
    counts = {**asdict(target.counters), "backlog": target.backlog}
    values: dict[str, Any] = {name: {"N": str(value)} for name, value in counts.items()}
    for name in _TIMES:
        value = getattr(target, name)
        if value is not None:
            values[name] = {"N": f"{value:.3f}"}
    values["backlog_more"] = {"BOOL": target.backlog_more}
    if target.last_error:
        values["last_error"] = {"S": target.last_error[:_ERROR_LIMIT]}
    return {"M": values}


def report_to_item(report: ShardReport) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": f"{PREFIX}{report.table}|{report.stream}|{report.shard_id}"},
        "table": {"S": report.table},
        "source": {"S": report.source},
        "stream": {"S": report.stream},
        "shard": {"S": report.shard_id},
        "worker": {"S": report.worker},
        "updated_at": {"N": f"{report.updated_at:.3f}"},
        "done": {"BOOL": report.done},
    }
    for target in report.targets:
        item[f"t#{target.target}"] = _target_to_map(target)
    return item


def _target_from_map(name: str, raw: Mapping[str, Any]) -> TargetReport:
    def count(key: str) -> int:
        return int(raw[key]["N"]) if key in raw else 0

    def time(key: str) -> float | None:
        return float(raw[key]["N"]) if key in raw else None

    return TargetReport(
        name,
        counters=PairCounters(**{counter: count(counter) for counter in _COUNTERS}),
        lag_s=time("lag_s"),
        stream_age_s=time("stream_age_s"),
        backlog=count("backlog"),
        backlog_more=bool(raw.get("backlog_more", {}).get("BOOL", False)),
        advanced_at=time("advanced_at"),
        last_error=raw.get("last_error", {}).get("S"),
        last_error_at=time("last_error_at"),
    )


def report_from_item(item: Mapping[str, Any]) -> ShardReport:
    targets = tuple(
        _target_from_map(key.split("#", 1)[1], value["M"])
        for key, value in sorted(item.items())
        if key.startswith("t#")
    )
    return ShardReport(
        table=item["table"]["S"],
        source=item["source"]["S"],
        stream=item["stream"]["S"],
        shard_id=item["shard"]["S"],
        worker=item["worker"]["S"],
        updated_at=float(item["updated_at"]["N"]),
        done=bool(item["done"]["BOOL"]),
        targets=targets,
    )
