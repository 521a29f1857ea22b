"""What a replicated change costs: write and read units per change, as DynamoDB reports them.

    .venv/bin/python -m benchmarks.bench_units

An application writes 300 inserts, then 300 updates, then 300 deletes of the same keys in
the first of three regions. After each phase, the real replicator (``build_replicator``,
run in this process, with botocore's clients) replicates the phase's stream records. A
botocore event hook on its clients asks DynamoDB for ``ReturnConsumedCapacity=TOTAL`` on
every call and sums what comes back, per region; the production code knows nothing of it.

Two things DynamoDB Local does not report, counted here the way AWS charges them:
a conditional write whose condition fails (AWS charges 1 write unit for a small item;
DynamoDB Local's error carries no ConsumedCapacity), and a read of a missing item
(DynamoDB Local reports 0; AWS charges 1 unit per key for a strongly consistent read,
found or not). ``read_units_per_change`` is what the server reported,
``aws_read_units_per_change`` counts each key read.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.common import REGIONS, client, create_table, fresh_server, item, report
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.settings import ReplicationSettings

__all__ = ["CapacityMeter", "measure"]

CHANGES = 300  # of each kind
TABLE = "Units"
_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
_FAILED = "ConditionalCheckFailedException"
Units = defaultdict[tuple[str, str], float]  # (region, kind) -> capacity units


class CapacityMeter:
    """Sums ConsumedCapacity per (region, kind) over the clients it is attached to.

    Kinds: ``write`` and ``read`` as the server reported them; ``failed_write``, conditional
    writes whose condition failed (1 unit each on AWS); ``aws_read``, 1 unit per key of a
    consistent read and 0.5 per key of an eventually consistent one."""

    def __init__(self) -> None:
        self.units: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()

    def attach(self, dynamodb: Any, region: str) -> None:
        events = dynamodb.meta.events
        events.register("before-parameter-build.dynamodb.*", functools.partial(self._ask, region))
        events.register("after-call.dynamodb.*", functools.partial(self._count, region))

    def snapshot(self) -> Units:
        with self._lock:
            return defaultdict(float, self.units)

    def _add(self, region: str, kind: str, units: float) -> None:
        with self._lock:
            self.units[(region, kind)] += units

    def _ask(self, region: str, params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "TOTAL"
        if model.name == "GetItem":
            self._add(region, "aws_read", 1.0 if params.get("ConsistentRead") else 0.5)
        elif model.name == "BatchGetItem":
            for request in params["RequestItems"].values():
                each = 1.0 if request.get("ConsistentRead") else 0.5
                self._add(region, "aws_read", each * len(request["Keys"]))

    def _count(self, region: str, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == _FAILED:
            self._add(region, "failed_write", 1.0)
        consumed = parsed.get("ConsumedCapacity")
        entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        kind = "read" if model.name in _READS else "write"
        for entry in entries:
            self._add(region, kind, float(entry.get("CapacityUnits", 0.0)))


def attach_to_replicator(meter: CapacityMeter, replicator: Replicator) -> None:
    """Hook every DynamoDB client the replicator's writers and tombstone reader use."""
    stores = [writer.protocol.store for writer in replicator.writers.values()]  # type: ignore[attr-defined]
    stores.append(replicator.tombstones.store)  # type: ignore[attr-defined]
    seen: set[int] = set()
    for store in stores:
        if id(store.client) not in seen:
            seen.add(id(store.client))
            meter.attach(store.client, store.region)


class StreamTail:
    """The source stream's records from where the last ``new_records`` call stopped."""

    def __init__(self, endpoint: str, table: str) -> None:
        spec = RegionSpec(REGIONS[0], endpoint)
        self.stream = StreamClient(
            REGIONS[0], make_client("dynamodb", spec), make_client("dynamodbstreams", spec)
        )
        self.arn = self.stream.stream_arn(table)
        self.last: dict[str, str] = {}

    def new_records(self, expected: int) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(records) < expected and time.monotonic() < deadline:
            for shard in self.stream.shards(self.arn):
                records.extend(self._drain(shard.shard_id))
        return records

    def _drain(self, shard_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        iterator: str | None = self.stream.iterator(self.arn, shard_id, self.last.get(shard_id))
        while iterator:
            page = self.stream.read(iterator)
            found.extend(page.records)
            iterator = page.next_iterator if page.records else None
        if found:
            self.last[shard_id] = found[-1]["dynamodb"]["SequenceNumber"]
        return found


def _phase(
    app: Any, tail: StreamTail, replicator: Replicator, write: Callable[[int], None]
) -> None:
    """The application's ``CHANGES`` writes, then their replication in one batch."""
    for n in range(CHANGES):
        write(n)
    records = tail.new_records(CHANGES)
    result = replicator.process(TABLE, records, from_json=False)
    if len(records) != CHANGES or result.failed_sequence() is not None:
        raise RuntimeError(f"replication failed: {len(records)} records, {result}")


def _count_items(endpoint: str, region: str, table: str) -> int:
    return int(client(endpoint, region).scan(TableName=table, Select="COUNT")["Count"])


def _per_change(before: Units, after: Units, regions: Sequence[str]) -> dict[str, float]:
    """Units per change and region, summed over ``regions`` then divided by their number."""
    kinds = ("write", "failed_write", "read", "aws_read")
    return {
        kind: sum(after[(r, kind)] - before[(r, kind)] for r in regions) / CHANGES / len(regions)
        for kind in kinds
    }


def measure() -> dict[str, Any]:
    """Units per replicated insert, update and delete; three regions, one fresh server."""
    with fresh_server() as server:
        endpoint = server.endpoint_url
        for region in REGIONS:
            create_table(endpoint, region, TABLE)
        specs = [RegionSpec(r, endpoint) for r in REGIONS]
        # Botocore's clients, not the lean transport the runner writes with: the meter's
        # event hook sees botocore's calls only, and the lean transport sends the same
        # requests (tests/integration/test_lean_contract.py), so the units are the same.
        replicator = build_replicator(specs[0], specs, ReplicationSettings(), make=make_client)
        meter = CapacityMeter()
        attach_to_replicator(meter, replicator)
        app, tail = client(endpoint, REGIONS[0]), StreamTail(endpoint, TABLE)
        stamp = int(time.time() * 1000)

        def put(offset: int, n: int) -> None:
            app.put_item(TableName=TABLE, Item=item(f"k{n}", stamp + offset + n))

        def delete(n: int) -> None:
            app.delete_item(TableName=TABLE, Key={"pk": {"S": f"k{n}"}})

        phases: dict[str, dict[str, float]] = {}
        source: dict[str, dict[str, float]] = {}
        for name, write in (
            ("insert", functools.partial(put, 0)),
            ("update", functools.partial(put, 10_000)),
            ("delete", delete),
        ):
            before = meter.snapshot()
            _phase(app, tail, replicator, write)
            after = meter.snapshot()
            phases[name] = _per_change(before, after, REGIONS[1:])
            source[name] = _per_change(before, after, REGIONS[:1])
            if name != "delete":
                continue
            left = [_count_items(endpoint, r, TABLE) for r in REGIONS]
            if any(left):
                raise RuntimeError(f"items left after the deletes: {left}")
        replicator.close()
    result = _summary(phases, source)
    if not any(result[f"units_per_{name}"] for name in phases):
        # Every change was replicated (checked above): a meter that saw no unit saw no call.
        raise RuntimeError("the capacity meter counted no write: its hook saw no call")
    # Units are counted exactly; each figure is a mean over this many replicated changes.
    kinds = {key: 3 if "per_change" in key else 2 if "or_update" in key else 1 for key in result}
    result["_samples"] = {key: CHANGES * n for key, n in kinds.items()}
    return result


Costs = Mapping[str, Mapping[str, float]]


def _summary(phases: Costs, source: Costs) -> dict[str, Any]:
    total: defaultdict[str, float] = defaultdict(float)
    source_total: defaultdict[str, float] = defaultdict(float)
    for name, costs in phases.items():
        for kind, units in costs.items():
            total[kind] += units
            source_total[kind] += source[name][kind]
    result: dict[str, Any] = {}
    for name, costs in phases.items():
        result[f"units_per_{name}"] = round(costs["write"] + costs["failed_write"], 3)
    result["source_units_per_delete"] = round(
        source["delete"]["write"] + source["delete"]["failed_write"], 3
    )
    result["source_units_per_insert_or_update"] = round(
        sum(source[n]["write"] + source[n]["failed_write"] for n in ("insert", "update")), 3
    )
    # Per change and target region, averaged over the three kinds of change.
    result["read_units_per_change"] = round(total["read"] / len(phases), 3)
    result["aws_read_units_per_change"] = round(total["aws_read"] / len(phases), 3)
    for name, costs in phases.items():
        result[f"aws_read_units_per_{name}"] = round(costs["aws_read"], 3)
    result["source_aws_read_units_per_change"] = round(source_total["aws_read"] / len(phases), 3)
    result["failed_condition_writes_per_change"] = round(total["failed_write"] / len(phases), 3)
    return result


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    report(measure(), "units.json")  # report() keeps ``_samples`` as ``samples``


if __name__ == "__main__":
    main()
