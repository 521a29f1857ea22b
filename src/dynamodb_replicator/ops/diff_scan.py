"""Compare a table across regions with bounded memory.

Every region is scanned in parallel; each item becomes one row (``ops.diff.rows_of``)
written to a bucket file chosen by a hash of the key. Buckets are then compared one at a
time (``ops.diff.compare_bucket``), so memory holds one bucket of rows, never the table.
``repair`` reuses the same pass and acts on each bucket's differences.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import parallel_scan
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes, TableNames
from dynamodb_replicator.core.residency import ResidencyRule
from dynamodb_replicator.ops.diff import DiffReport, Row, compare_bucket, rows_of

__all__ = ["scan_and_compare"]


class _Spill:
    """Per-region bucket files, appended to by the scan threads."""

    def __init__(self, directory: Path, regions: Sequence[str], buckets: int) -> None:
        self.directory, self.buckets = directory, buckets
        self.locks = {(r, b): threading.Lock() for r in regions for b in range(buckets)}

    def path(self, region: str, bucket: int) -> Path:
        return self.directory / f"{region}.{bucket}.jsonl"

    def add(self, region: str, rows: list[Row]) -> None:
        grouped: dict[int, list[str]] = {}
        for row in rows:
            bucket = int(hashlib.sha1(row.key.encode()).hexdigest()[:8], 16) % self.buckets
            grouped.setdefault(bucket, []).append(
                json.dumps([row.key, row.digest, row.timestamp, row.origin, row.scope])
            )
        for bucket, lines in grouped.items():
            with self.locks[(region, bucket)], open(self.path(region, bucket), "a") as handle:
                handle.write("\n".join(lines) + "\n")

    def load(self, region: str, bucket: int) -> dict[str, Row]:
        path = self.path(region, bucket)
        if not path.exists():
            return {}
        with open(path) as handle:
            return {
                r[0]: Row(r[0], r[1], r[2], r[3], None if r[4] is None else tuple(r[4]))
                for r in (json.loads(line) for line in handle)
            }


def scan_and_compare(
    table: str,
    regions: Sequence[RegionSpec],
    key_names: Sequence[str],
    *,
    fields: SystemAttributes,
    segments: int = 4,
    buckets: int = 64,
    on_bucket: Callable[[list[str]], None] | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    names: TableNames | None = None,
    rule: ResidencyRule | None = None,
) -> DiffReport:
    """Scan ``table`` (by its name in each region: ``names``) in every region and compare
    (each region against what ``rule`` allows it to hold);
    ``on_bucket`` gets each bucket's differing keys (``codec.key_to_json`` texts) as soon as
    that bucket is compared."""
    labels = [r.name for r in regions]
    report = DiffReport(table, labels[0], items=dict.fromkeys(labels, 0))
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="ddbr-diff-") as directory:
        spill = _Spill(Path(directory), labels, buckets)
        for spec in regions:
            client = make_client("dynamodb", spec, pool=segments + 2)

            def on_page(
                segment: int, items: list[dict[str, Any]], _: Any, region: str = spec.name
            ) -> None:
                spill.add(region, rows_of(items, region, key_names, fields, rule))
                with lock:
                    report.items[region] += len(items)
                if on_progress is not None:
                    on_progress(region, len(items))

            physical = (names or TableNames()).physical(table, spec.name)
            parallel_scan(client, physical, region=spec.name, segments=segments, on_page=on_page)
        for bucket in range(buckets):
            rows = {name: spill.load(name, bucket) for name in labels}
            differing = compare_bucket(rows, labels[0], report)
            if differing and on_bucket is not None:
                on_bucket(differing)
    return report
