"""``stamp(client)``: every kind of write through a stamped client or resource carries a
fresh ``__timestamp`` and replicates; an explicit one is kept."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from dynamodb_replicator import stamp
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, StreamPump, create_table

US, EU = "us-east-1", "eu-west-1"
TS = FIELDS.timestamp
# The stamper's clock stands still: it must still give strictly increasing timestamps.
STILL = 1_700_000_000.0


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Stamped", region=region)
    yield clients


def test_every_write_is_stamped_and_replicates(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("dynamodb", region_name=US, endpoint_url=ddb_local.endpoint_url)
    stamp(client, clock=ManualClock(STILL))
    table = boto3.resource("dynamodb", region_name=US, endpoint_url=ddb_local.endpoint_url).Table(
        "Stamped"
    )
    stamp(table, clock=ManualClock(STILL))

    client.put_item(TableName="Stamped", Item={"pk": {"S": "put"}})
    client.put_item(TableName="Stamped", Item={"pk": {"S": "update"}, "n": {"N": "1"}})
    client.update_item(
        TableName="Stamped",
        Key={"pk": {"S": "update"}},
        UpdateExpression="SET n = n + :one REMOVE gone",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    client.update_item(
        TableName="Stamped", Key={"pk": {"S": "remove-only"}}, UpdateExpression="REMOVE x"
    )
    client.batch_write_item(
        RequestItems={"Stamped": [{"PutRequest": {"Item": {"pk": {"S": "b"}}}}]}
    )
    client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "Stamped", "Item": {"pk": {"S": "tx-put"}}}},
            {
                "Update": {
                    "TableName": "Stamped",
                    "Key": {"pk": {"S": "tx-update"}},
                    "UpdateExpression": "ADD c :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    table.put_item(Item={"pk": "resource"})
    table.update_item(
        Key={"pk": "resource-update"},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": "x"},
    )
    table.put_item(Item={"pk": "explicit", TS: Decimal(5)})

    items = {i["pk"]["S"]: i for i in clients[US].scan(TableName="Stamped")["Items"]}
    keys = {
        "put",
        "update",
        "remove-only",
        "b",
        "tx-put",
        "tx-update",
        "resource",
        "resource-update",
        "explicit",
    }
    assert set(items) == keys
    assert items["explicit"][TS] == {"N": "5"}
    stamps = [int(items[k][TS]["N"]) for k in keys - {"explicit"}]
    assert all(s >= 1_700_000_000_000 for s in stamps)
    assert len(set(stamps)) == len(stamps)  # strictly increasing: never two alike
    assert items["update"]["n"] == {"N": "2"}

    pump = StreamPump(ddb_local.endpoint_url, "Stamped", (US, EU))
    pump.run_until_quiet(monkeypatch)
    replicated = {i["pk"]["S"]: i for i in clients[EU].scan(TableName="Stamped")["Items"]}
    assert set(replicated) == keys
    assert all(replicated[k][TS] == items[k][TS] for k in keys)


def key(name: str) -> dict[str, Any]:
    return {"pk": {"S": f"m-{name}"}}


def test_a_stamped_write_drops_the_replica_marker(
    ddb_local: DynamoDBLocal, clients: dict[str, Any]
) -> None:
    """A replica (marked) updated or rewritten through a stamped client keeps no marker, in
    every request form DynamoDB accepts: an application write is never a replica write."""
    client = boto3.client("dynamodb", region_name=EU, endpoint_url=ddb_local.endpoint_url)
    stamp(client, clock=ManualClock(STILL))
    marked = {TS: {"N": "7"}, FIELDS.marker: {"N": "7"}, FIELDS.origin: {"S": US}}
    for name in ("set", "remove", "legacy", "conditional", "put", "read"):
        clients[EU].put_item(TableName="Stamped", Item={"pk": {"S": f"m-{name}"}, **marked})
    client.update_item(
        TableName="Stamped",
        Key=key("set"),
        UpdateExpression="SET #t = :t, v = :v",
        ExpressionAttributeNames={"#t": TS},
        ExpressionAttributeValues={":t": {"N": "7"}, ":v": {"S": "x"}},
    )
    client.update_item(TableName="Stamped", Key=key("remove"), UpdateExpression="REMOVE gone")
    client.update_item(
        TableName="Stamped",
        Key=key("legacy"),
        AttributeUpdates={"v": {"Value": {"S": "x"}, "Action": "PUT"}},
    )
    # Legacy conditional, no AttributeUpdates: stamped in the legacy form, or DynamoDB
    # refuses the request (no mixing expression and non-expression parameters).
    client.update_item(
        TableName="Stamped", Key=key("conditional"), Expected={TS: {"Value": {"N": "7"}}}
    )
    client.put_item(TableName="Stamped", Item={**key("put"), **marked})
    # Optimistic locking: the condition and the update read the timestamp and the marker,
    # and the stamper still writes the one and removes the other (reads are no conflict).
    client.update_item(
        TableName="Stamped",
        Key=key("read"),
        UpdateExpression="SET priorStamp = #t, heldMarker = #m",
        ConditionExpression="#t = :seen",
        ExpressionAttributeNames={"#t": TS, "#m": FIELDS.marker},
        ExpressionAttributeValues={":seen": {"N": "7"}},
    )
    for name in ("set", "remove", "legacy", "conditional", "put", "read"):
        item = clients[EU].get_item(TableName="Stamped", Key=key(name), ConsistentRead=True)
        assert FIELDS.marker not in item["Item"], name
        assert item["Item"][FIELDS.origin] == {"S": US}  # the rest is the application's
    read = clients[EU].get_item(TableName="Stamped", Key=key("read"), ConsistentRead=True)["Item"]
    assert (read["priorStamp"], read["heldMarker"]) == ({"N": "7"}, {"N": "7"})
    assert int(read[TS]["N"]) > 7  # stamped, though the condition named the timestamp
    conditional = clients[EU].get_item(
        TableName="Stamped", Key=key("conditional"), ConsistentRead=True
    )["Item"]
    assert int(conditional[TS]["N"]) > 7
