"""The residency check: scan every region and find each item held outside its scope.

For an auditor: every item of every region is read (a consistent parallel Scan) and its
scope computed from the table's rule (``core.residency``); the report says, per region,
how many items were checked and which sit where the rule does not allow them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import parallel_scan
from dynamodb_replicator.core.codec import key_to_json
from dynamodb_replicator.core.model import RegionSpec, TableNames
from dynamodb_replicator.core.residency import ResidencyRule

__all__ = ["ResidencyReport", "check_residency"]

SAMPLES = 5


@dataclass(slots=True)
class ResidencyReport:
    """Per region: items checked, items outside their scope and a few of their keys."""

    table: str
    rule: ResidencyRule | None
    checked: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No item sits outside its scope."""
        return not any(self.outside.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rule": None if self.rule is None else self.rule.to_json(),
            "clean": self.clean,
            "regions": {
                region: {
                    "checked": self.checked[region],
                    "outside": self.outside[region],
                    "samples": self.samples[region],
                }
                for region in self.checked
            },
        }


def check_residency(
    table: str,
    regions: Sequence[RegionSpec],
    key_names: Sequence[str],
    rule: ResidencyRule | None,
    *,
    segments: int = 4,
    names: TableNames | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> ResidencyReport:
    """Scan ``table`` in every region of ``regions`` against ``rule`` (None: no rule, so
    every item may be anywhere: only the counts are of interest)."""
    report = ResidencyReport(table, rule)
    lock = threading.Lock()
    for spec in regions:
        report.checked[spec.name] = report.outside[spec.name] = 0
        report.samples[spec.name] = []

        def on_page(_: int, items: list[dict[str, Any]], __: Any, region: str = spec.name) -> None:
            outside = [i for i in items if rule is not None and not rule.allows(i, region)]
            with lock:
                report.checked[region] += len(items)
                report.outside[region] += len(outside)
                room = SAMPLES - len(report.samples[region])
                report.samples[region] += [key_to_json(i, key_names) for i in outside[:room]]
            if on_progress is not None:
                on_progress(region, len(items))

        client = make_client("dynamodb", spec, pool=segments + 2)
        physical = (names or TableNames()).physical(table, spec.name)
        parallel_scan(client, physical, region=spec.name, segments=segments, on_page=on_page)
    return report
