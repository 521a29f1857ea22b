"""``dynamodb-replicator demo``: three regions on an embedded DynamoDB Local.

Writes conflicting changes in every region, replicates them by feeding the real stream
records to the Lambda handler, and shows the regions side by side with the winners.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from dynamodb_replicator import lambda_handler
from dynamodb_replicator.aws.clients import RegionSpec, make_client
from dynamodb_replicator.aws.streams import StreamClient, TrimmedDataError
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.codec import record_to_lambda_event_record
from dynamodb_replicator.local import DynamoDBLocal
from dynamodb_replicator.model import SystemAttributes

__all__ = ["register"]

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
TABLE = "Orders"
FIELDS = SystemAttributes()

# (region, action, key, timestamp, status): the demo's writes, in two rounds.
FIRST_ROUND = [
    ("us-east-1", "put", "order-1", 1000, "placed"),
    ("eu-west-1", "put", "order-1", 1005, "paid"),  # same key, later timestamp: wins
    ("us-east-1", "put", "order-2", 2000, "placed"),
    ("eu-west-1", "put", "order-2", 2000, "shipped"),
    ("ap-southeast-1", "put", "order-2", 2000, "cancelled"),  # equal timestamps: a tie
    ("ap-southeast-1", "put", "order-3", 3000, "placed"),
]
SECOND_ROUND = [
    ("eu-west-1", "delete", "order-3", 0, ""),  # deleted where it was replicated to
    ("us-east-1", "put", "order-4", 4000, "placed"),
]
EXPLANATIONS = {
    "order-1": "eu-west-1 wrote __timestamp 1005 > 1000 from us-east-1: the later write wins.",
    "order-2": "three writes with __timestamp 2000: the tie goes to the largest region name, "
    "us-east-1.",
    "order-3": "written in ap-southeast-1, deleted in eu-west-1: the delete removed that "
    "version in every region.",
    "order-4": "a plain write, replicated everywhere.",
}


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run the local three-region demo")
    parser.set_defaults(run=run)


def _write(clients: dict[str, Any], writes: list[tuple[str, str, str, int, str]]) -> None:
    for region, action, key, timestamp, status in writes:
        client = clients[region]
        if action == "put":
            item = {
                "pk": {"S": key},
                FIELDS.timestamp: {"N": str(timestamp)},
                "status": {"S": status},
                "region_written": {"S": region},
            }
            client.put_item(TableName=TABLE, Item=item)
        else:
            client.delete_item(TableName=TABLE, Key={"pk": {"S": key}})


class LambdaPump:
    """Feeds every region's new stream records to the Lambda handler, like Lambda would."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.positions: dict[tuple[str, str], str | None] = {}

    def _env(self, source: str) -> dict[str, str]:
        return {
            "REPLICATOR_SOURCE_REGION": source,
            "REPLICATOR_REGIONS": ",".join(REGIONS),
            "REPLICATOR_ENDPOINT_URLS": ",".join(f"{r}={self.endpoint}" for r in REGIONS),
            "REPLICATOR_LOG_LEVEL": "WARNING",
        }

    def pump(self, region: str) -> int:
        spec = RegionSpec(region, self.endpoint)
        stream = StreamClient(
            region, make_client("dynamodb", spec), make_client("dynamodbstreams", spec)
        )
        arn = stream.stream_arn(TABLE)
        delivered = 0
        for shard in stream.shards(arn):
            after = self.positions.get((region, shard.shard_id))
            try:
                page = stream.read(stream.iterator(arn, shard.shard_id, after))
            except TrimmedDataError:  # DynamoDB Local, iterator on a shard that was empty
                page = stream.read(stream.iterator(arn, shard.shard_id, None))
            if not page.records:
                continue
            records = [
                record_to_lambda_event_record(r, event_source_arn=arn, aws_region=region)
                for r in page.records
            ]
            os.environ.update(self._env(region))
            response = lambda_handler.handler(json.loads(json.dumps({"Records": records})), None)
            if response["batchItemFailures"]:
                raise RuntimeError(f"replication failed: {response}")
            self.positions[(region, shard.shard_id)] = page.records[-1]["dynamodb"][
                "SequenceNumber"
            ]
            delivered += len(records)
        return delivered

    def until_quiet(self, say: Callable[[str], None]) -> None:
        for round_number in range(1, 20):
            counts = {region: self.pump(region) for region in REGIONS}
            say(f"  round {round_number}: records handled per source region {counts}")
            if not any(counts.values()):
                return
        raise RuntimeError("replication did not settle")


def _show(console: Console, clients: dict[str, Any]) -> None:
    table = Table(title=f"{TABLE} in every region after replication")
    table.add_column("key")
    for region in REGIONS:
        table.add_column(region)
    items = {
        region: {
            i["pk"]["S"]: i
            for i in clients[region].scan(TableName=TABLE, ConsistentRead=True)["Items"]
        }
        for region in REGIONS
    }
    keys = sorted(set().union(*[set(v) for v in items.values()]) | set(EXPLANATIONS))
    for key in keys:
        cells = []
        for region in REGIONS:
            item = items[region].get(key)
            cells.append(
                "(deleted)"
                if item is None
                else f"{item['status']['S']} @ {item[FIELDS.timestamp]['N']} "
                f"from {item.get(FIELDS.origin, {'S': region})['S']}"
            )
        table.add_row(key, *cells)
    console.print(table)
    for key, why in EXPLANATIONS.items():
        console.print(f"[bold]{key}[/bold]: {why}")
    identical = (
        len({json.dumps(_strip(items[r]), sort_keys=True, default=str) for r in REGIONS}) == 1
    )
    console.print(
        "[green]All regions hold identical items.[/green]"
        if identical
        else "[red]Regions differ![/red]"
    )


def _strip(items: dict[str, Any]) -> dict[str, Any]:
    added = FIELDS.added()
    return {k: {a: v for a, v in i.items() if a not in added} for k, i in items.items()}


def run(args: argparse.Namespace) -> int:
    console = Console()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    console.print("[bold]Starting DynamoDB Local[/bold] (in memory)...")
    with DynamoDBLocal() as server:
        clients = {r: make_client("dynamodb", RegionSpec(r, server.endpoint_url)) for r in REGIONS}
        for region, client in clients.items():
            client.create_table(
                TableName=TABLE,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
            ensure_tombstone_table(client, TABLE, region=region)
        console.print(
            f"Created {TABLE} with a stream in {', '.join(REGIONS)} at {server.endpoint_url}"
        )
        pump = LambdaPump(server.endpoint_url)
        for number, writes in enumerate((FIRST_ROUND, SECOND_ROUND), start=1):
            console.print(f"[bold]Writes, round {number}[/bold]")
            for region, action, key, timestamp, status in writes:
                what = f"{status} @ {timestamp}" if action == "put" else "delete"
                console.print(f"  {region:15} {action:6} {key}: {what}")
            _write(clients, writes)
            console.print("Replicating: stream records -> Lambda handler")
            pump.until_quiet(console.print)
        _show(console, clients)
    console.print("DynamoDB Local stopped.")
    return 0
