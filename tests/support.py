"""Helpers for integration tests: tables in several regions and a stream-to-Lambda pump."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.awslambda import handler as lambda_handler
from dynamodb_replicator.awslambda.settings import replication_environment
from dynamodb_replicator.core.codec import record_to_lambda_event_record
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes, TableNames
from dynamodb_replicator.core.progress import ScanProgressStore, ScanSegment
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.streams import TrimmedDataError

STOPS_WITHIN_S = 5.0
"""How soon a command that waits for no work in flight (``diff`` and ``repair`` waiting on a
region, the runner) must have exited after Ctrl-C. The issue asks for one second; on the
shared 2-core machine under load a process has taken seconds just to be scheduled. Commands
that finish the writes in flight first (add-region, version-items) are held to the writes
made after the signal instead (one round per scan segment): a round's time grows with the
write latency (a merge took 5.05 s under load 15 when it still finished a slice of 50
items), a count of writes does not."""

FIELDS = SystemAttributes()
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
T = TypeVar("T")


def ctrl_c(process: subprocess.Popen[Any], cap: float = 60.0) -> float:
    """SIGINT ``process`` (a Ctrl-C) and poll until it has exited, failing after ``cap``
    seconds: the seconds from the signal to the exit. Its output is small (no progress bars
    through a pipe), so an unread pipe does not hold it up."""
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    while process.poll() is None:
        assert time.monotonic() - signalled < cap, f"still running {cap} s after Ctrl-C"
        time.sleep(0.02)
    return time.monotonic() - signalled


def handled_by_resume_points(
    client: Any, table: str, progress: ScanProgressStore, scans: Sequence[ScanSegment]
) -> set[str]:
    """The ``pk`` values a resumable scan of ``table`` has handled by its saved progress:
    each segment's items, in the segment's scan order, up to and including its resume key
    (all of them once it is done). An interrupted copy must have written exactly these."""
    handled: set[str] = set()
    for segment in scans:
        saved = progress.load_progress(segment)
        if not saved.started:
            continue
        last = None if saved.done else dict(saved.last_key or {}).get("pk")
        kwargs: dict[str, Any] = {
            "TableName": table,
            "Segment": segment.segment,
            "TotalSegments": segment.segments,
            "ConsistentRead": True,
        }
        while True:
            page = client.scan(**kwargs)
            for item in page["Items"]:
                handled.add(item["pk"]["S"])
                if item["pk"] == last:
                    break
            else:
                if "LastEvaluatedKey" in page:
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
                    continue
            break
    return handled


def poll(check: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy and return that; fail naming
    ``what`` after ``timeout`` seconds. Tests wait for states this way, never by sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def create_table(
    client: Any,
    name: str,
    key: Sequence[tuple[str, str]] = (("pk", "S"),),
    *,
    region: str,
    view: str = "NEW_AND_OLD_IMAGES",
) -> None:
    """Create ``name`` with a stream and its tombstone table; wait until ACTIVE."""
    roles = ("HASH", "RANGE")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": n, "KeyType": roles[i]} for i, (n, _) in enumerate(key)],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in key],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ensure_tombstone_table(client, name, region=region)


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def comparable(items: list[dict[str, Any]], *, drop: frozenset[str]) -> list[str]:
    """Items as sorted canonical JSON, without the given attributes."""

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"$b": value.hex()}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    return sorted(
        json.dumps(encode({k: v for k, v in item.items() if k not in drop}), sort_keys=True)
        for item in items
    )


class StreamPump:
    """Reads each region's stream with GetRecords and feeds it to the Lambda handler.

    Remembers shard iterators, so every record is delivered once, in order, per shard.
    """

    def __init__(
        self,
        endpoint_url: str,
        table: str,
        regions: Sequence[str] = REGIONS,
        *,
        only_targets: Sequence[str] = (),
        names: TableNames | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.table = table  # the logical name; ``names``: its names per region
        self.names = names or TableNames()
        self.regions = list(regions)
        self.only_targets = list(only_targets)
        self.iterators: dict[tuple[str, str], str | None] = {}
        self.responses: list[dict[str, Any]] = []

    def read(self, region: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """New records per shard of ``region``'s stream since the last read."""
        spec = RegionSpec(region, self.endpoint_url)
        stream = StreamClient(
            region, make_client("dynamodb", spec), make_client("dynamodbstreams", spec), self.names
        )
        arn = stream.stream_arn(self.table)
        batches = []
        for shard in stream.shards(arn):
            position = (region, shard.shard_id)
            if position not in self.iterators:
                self.iterators[position] = stream.iterator(arn, shard.shard_id, None)
            iterator = self.iterators[position]
            records: list[dict[str, Any]] = []
            while iterator:
                try:
                    page = stream.read(iterator)
                except TrimmedDataError:
                    if records:
                        raise
                    # DynamoDB Local: an iterator taken on an empty shard is unusable later.
                    iterator = stream.iterator(arn, shard.shard_id, None)
                    continue
                records.extend(page.records)
                iterator = page.next_iterator
                if not page.records:
                    break
            self.iterators[position] = iterator
            batches.append((arn, records))
        return batches

    def env(self, source: str) -> dict[str, str]:
        env = handler_env(self.endpoint_url, source, self.regions)
        env["REPLICATOR_TARGET_REGIONS"] = ",".join(t for t in self.only_targets if t != source)
        tables = replication_environment(ReplicationSettings(names=self.names))
        env["REPLICATOR_TABLE_NAMES"] = tables.get("REPLICATOR_TABLE_NAMES", "")
        return env

    def deliver_from(self, region: str, monkeypatch: Any) -> int:
        return self.deliver(region, self.env(region), monkeypatch)

    def deliver(self, region: str, env: Mapping[str, str], monkeypatch: Any) -> int:
        """Deliver new records of ``region`` to the handler until it accepts them all."""
        delivered = 0
        for arn, records in self.read(region):
            events = [
                record_to_lambda_event_record(r, event_source_arn=arn, aws_region=region)
                for r in records
            ]
            while events:
                # The event travels as JSON, exactly as Lambda hands it over.
                event = json.loads(json.dumps({"Records": events[:100]}))
                for name, value in env.items():
                    monkeypatch.setenv(name, value)
                response = lambda_handler.handler(event, None)
                self.responses.append(response)
                failures = response["batchItemFailures"]
                if failures:
                    raise AssertionError(f"handler reported failures: {failures}")
                delivered += len(event["Records"])
                events = events[100:]
        return delivered

    def run_until_quiet(self, monkeypatch: Any, rounds: int = 20) -> int:
        """Pump every region until a full round delivers nothing; return rounds used."""
        for round_number in range(1, rounds + 1):
            total = sum(
                self.deliver(region, self.env(region), monkeypatch) for region in self.regions
            )
            if total == 0:
                return round_number
        raise AssertionError(f"streams still busy after {rounds} rounds")


def handler_env(endpoint_url: str, source: str, regions: Sequence[str]) -> dict[str, str]:
    return {
        "REPLICATOR_SOURCE_REGION": source,
        "REPLICATOR_REGIONS": ",".join(regions),
        "REPLICATOR_ENDPOINT_URLS": ",".join(f"{r}={endpoint_url}" for r in regions),
    }
