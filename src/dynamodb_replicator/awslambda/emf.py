"""The Lambda's metrics for one batch, as CloudWatch Embedded Metric Format lines. Pure.

One line per target region, with dimensions Table, SourceRegion and TargetRegion, holding
the same quantities the runner serves to Prometheus. (Backlog is not known inside Lambda:
the function's IteratorAge metric, which AWS publishes, measures it.)
"""

from __future__ import annotations

from dynamodb_replicator.core.lag import Ages
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.observe.metrics import emf_document

__all__ = ["batch_emf"]


def batch_emf(
    namespace: str, table: str, source: str, result: BatchResult, *, ages: Ages, now: float
) -> list[str]:
    lines = []
    for region, outcome in sorted(result.targets.items()):
        failed = result.failed_count(region)
        lost, won = outcome.lost_and_won()
        values: dict[str, tuple[float, str]] = {
            "Applied": (outcome.applied, "Count"),
            "Stale": (outcome.stale, "Count"),
            "Failed": (failed, "Count"),
            "Retried": (outcome.retried, "Count"),
            "ConflictsLost": (lost, "Count"),
            "ConflictsWon": (won, "Count"),
        }
        if region == source:
            values["LostLocally"] = (len(result.lost_locally), "Count")
        if not failed and ages.timestamp is not None:
            values["LagSeconds"] = (round(ages.timestamp, 3), "Seconds")
        if not failed and ages.stream is not None:
            values["StreamAgeSeconds"] = (round(ages.stream, 3), "Seconds")
        dimensions = {"Table": table, "SourceRegion": source, "TargetRegion": region}
        lines.append(emf_document(namespace, dimensions, values, int(now * 1000)))
    return lines
