"""The Lambda's metrics for one batch, as CloudWatch Embedded Metric Format lines. Pure.

One line per target region, with dimensions Table, SourceRegion and TargetRegion, holding
the same quantities the runner serves to Prometheus; CloudWatch Logs turns the lines into
metrics. (Backlog is not known inside Lambda: the function's IteratorAge metric, which AWS
publishes, measures it.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.lag import Ages
from dynamodb_replicator.core.replicator import BatchResult

__all__ = ["batch_emf", "emf_document"]


def emf_document(
    namespace: str,
    dimensions: Mapping[str, str],
    values: Mapping[str, tuple[float, str]],
    timestamp_ms: int,
) -> str:
    """One EMF log line: ``values`` maps metric name -> (value, CloudWatch unit)."""
    document: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (value, _) in values.items()},
    }
    return json.dumps(document, separators=(",", ":"))


def batch_emf(
    namespace: str, table: str, source: str, result: BatchResult, *, ages: Ages, now: float
) -> list[str]:
    """One EMF line per target region of ``result``."""
    lines = []
    for region in sorted(result.targets):
        counts = PairCounters.of(result, region)
        values: dict[str, tuple[float, str]] = {
            "Applied": (counts.applied, "Count"),
            "Stale": (counts.stale, "Count"),
            "Failed": (counts.failed, "Count"),
            "Retried": (counts.retried, "Count"),
            "ConflictsLost": (counts.lost, "Count"),
            "ConflictsWon": (counts.won, "Count"),
            "ResidencyRefused": (counts.refused, "Count"),
        }
        if region == source:
            values["LostLocally"] = (len(result.lost_locally), "Count")
            values["ContractViolations"] = (len(result.violations), "Count")
            values["ResidencyRemoved"] = (counts.removed, "Count")
        if not counts.failed and ages.timestamp is not None:
            values["LagSeconds"] = (round(ages.timestamp, 3), "Seconds")
        if not counts.failed and ages.stream is not None:
            values["StreamAgeSeconds"] = (round(ages.stream, 3), "Seconds")
        dimensions = {"Table": table, "SourceRegion": source, "TargetRegion": region}
        lines.append(emf_document(namespace, dimensions, values, int(now * 1000)))
    return lines
