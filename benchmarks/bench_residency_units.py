"""What residency costs: write units per change in the regions inside and outside an item's
scope, as DynamoDB reports them (the meter of ``bench_units``).

    .venv/bin/python -m benchmarks.bench_residency_units

Three regions A, B, C and a rule on ``country``: ``AB`` items may live in A and B, ``AC``
items in A and C, ``BC`` items in B and C. An application in A inserts 300 AB items,
updates them, moves them to AC (they leave B and enter C), moves them back, and deletes
them; then inserts 300 BC items (writes outside its own region's scope). After each phase
the real replicator replicates the phase's records, and the write units each region
consumed are divided by the number of changes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from benchmarks.bench_units import (
    CHANGES,
    CapacityMeter,
    StreamTail,
    _phase,
    attach_to_replicator,
)
from benchmarks.common import REGIONS, client, create_table, fresh_server, item, report
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.residency import Residency, ResidencyRule
from dynamodb_replicator.core.settings import ReplicationSettings

__all__ = ["measure"]

TABLE = "Units"
A, B, C = REGIONS
RULE = ResidencyRule(
    "country",
    (("AB", frozenset({A, B})), ("AC", frozenset({A, C})), ("BC", frozenset({B, C}))),
)


def measure() -> dict[str, Any]:
    """Write units per change and region, per phase."""
    with fresh_server() as server:
        endpoint = server.endpoint_url
        for region in REGIONS:
            create_table(endpoint, region, TABLE)
        specs = [RegionSpec(r, endpoint) for r in REGIONS]
        settings = ReplicationSettings(residency=Residency(((TABLE, RULE),)))
        replicator = build_replicator(specs[0], specs, settings)
        meter = CapacityMeter()
        attach_to_replicator(meter, replicator)
        app, tail = client(endpoint, REGIONS[0]), StreamTail(endpoint, TABLE)
        stamp = int(time.time() * 1000)

        def put(offset: int, country: str, n: int) -> None:
            found = item(f"k{n}", stamp + offset + n) | {"country": {"S": country}}
            app.put_item(TableName=TABLE, Item=found)

        def delete(n: int) -> None:
            app.delete_item(TableName=TABLE, Key={"pk": {"S": f"k{n}"}})

        phases: list[tuple[str, Callable[[int], None]]] = [
            ("insert", functools.partial(put, 0, "AB")),
            ("update", functools.partial(put, 10_000, "AB")),
            ("move_ab_to_ac", functools.partial(put, 20_000, "AC")),
            ("move_back", functools.partial(put, 30_000, "AB")),
            ("delete", delete),
            # Last: its removals in A show up in A's stream (echoes) after the phase.
            ("insert_outside_own_scope", functools.partial(put, 40_000, "BC")),
        ]
        result: dict[str, Any] = {}
        for name, write in phases:
            before = meter.snapshot()
            _phase(app, tail, replicator, write)
            after = meter.snapshot()
            result[name] = {
                region: round(
                    sum(after[(region, k)] - before[(region, k)] for k in ("write", "failed_write"))
                    / CHANGES,
                    3,
                )
                for region in REGIONS
            }
        held = [
            int(client(endpoint, r).scan(TableName=TABLE, Select="COUNT")["Count"]) for r in REGIONS
        ]
        result["held_at_the_end"] = dict(zip(REGIONS, held, strict=True))
        replicator.close()
    return result


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    report(measure(), "residency_units.json")


if __name__ == "__main__":
    main()
