"""The CloudWatch dashboard of one source region's stack: the function's EMF metrics per
table and target region, and AWS's own metrics of the functions and the failure store. Pure:
builds a dict. The docs (operating/dashboards.md) say what each widget shows and what to do
when it turns red.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dynamodb_replicator.deploy.cfn import FAILURE_STORE

__all__ = ["dashboard"]

_WIDTH = 12
_HEIGHT = 6


def _pairs(
    namespace: str, names: Sequence[str], tables: Sequence[str], source: str, targets: Sequence[str]
) -> list[list[Any]]:
    return [
        [namespace, name, "Table", table, "SourceRegion", source, "TargetRegion", target]
        for name in names
        for table in tables
        for target in targets
    ]


def _widget(title: str, metrics: list[list[Any]], stat: str, index: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": (index % 2) * _WIDTH,
        "y": (index // 2) * _HEIGHT,
        "width": _WIDTH,
        "height": _HEIGHT,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": stat,
            "period": 60,
            "metrics": metrics,
        },
    }


def dashboard(
    *,
    tables: Sequence[str],
    source: str,
    targets: Sequence[str],
    functions: Sequence[str],
    namespace: str,
) -> dict[str, Any]:
    """The ``AWS::CloudWatch::Dashboard`` resource. ``functions`` are the functions' names,
    with ``${NamePrefix}`` in them (the body goes through ``Fn::Sub``)."""
    lambdas = [["AWS/Lambda", "IteratorAge", "FunctionName", f] for f in functions]
    problems = [
        ["AWS/Lambda", name, "FunctionName", f]
        for name in ("Errors", "Throttles", "DestinationDeliveryFailures")
        for f in functions
    ]
    store = [
        ["AWS/S3", "PutRequests", "BucketName", f"${{{FAILURE_STORE}}}", "FilterId", "EntireBucket"]
    ]
    widgets = [
        (
            "Applied and stale per target",
            _pairs(namespace, ("Applied", "Stale"), tables, source, targets),
            "Sum",
        ),
        (
            "Failed and retried writes",
            _pairs(namespace, ("Failed", "Retried"), tables, source, targets),
            "Sum",
        ),
        (
            "Lag (by __timestamp), maximum",
            _pairs(namespace, ("LagSeconds", "StreamAgeSeconds"), tables, source, targets),
            "Maximum",
        ),
        (
            "Conflicts lost and won",
            _pairs(namespace, ("ConflictsLost", "ConflictsWon"), tables, source, targets),
            "Sum",
        ),
        (
            "Local writes that lost, contract violations",
            _pairs(namespace, ("LostLocally", "ContractViolations"), tables, source, [source]),
            "Sum",
        ),
        ("Iterator age (backlog), maximum", lambdas, "Maximum"),
        ("Function errors, throttles, lost batches", problems, "Sum"),
        ("Batches discarded into the failure store", store, "Sum"),
    ]
    body = {"widgets": [_widget(t, m, s, i) for i, (t, m, s) in enumerate(widgets)]}
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": {"Fn::Sub": "${NamePrefix}-${AWS::Region}"},
            "DashboardBody": {"Fn::Sub": json.dumps(body, separators=(",", ":"))},
        },
    }
