"""Bad and extreme inputs: each gives a correct result or a clear error, never a silent loss."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, REGIONS, StreamPump, comparable, create_table, scan

US, EU, AP = REGIONS
SYSTEM = FIELDS.added()
LIMIT = 400 * 1024


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Odd", region=region)
    yield clients


def same_everywhere(clients: dict[str, Any], table: str) -> list[str]:
    states = {r: comparable(scan(c, table), drop=SYSTEM) for r, c in clients.items()}
    assert states[US] == states[EU] == states[AP]
    return states[US]


def test_unusual_names_values_and_number_limits(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = {
        "pk": {"S": "odd \u2603 key/with:all#sorts.of[0]chars"},
        FIELDS.timestamp: {"N": "12345678901234567890123456789012345678"},
        "with space": {"S": ""},  # empty strings are allowed outside keys
        "ünïcødé 😀": {"S": "nul\x00inside, tab\t, newline\n"},
        "#hash": {"B": b""},
        ":colon": {"L": []},
        "a.b": {"M": {}},
        "max": {"N": "9.9999999999999999999999999999999999999E+125"},
        "min": {"N": "-9.9999999999999999999999999999999999999E+125"},
        "tiny": {"N": "1E-130"},
        "precise": {"N": "0.12345678901234567890123456789012345678"},
        "sets": {"NS": ["1E-130", "-0", "99999999999999999999999999999999999999"]},
    }
    clients[US].put_item(TableName="Odd", Item=odd)
    clients[EU].put_item(
        TableName="Odd", Item={"pk": {"S": "future"}, FIELDS.timestamp: {"N": str(10**14)}}
    )
    StreamPump(ddb_local.endpoint_url, "Odd").run_until_quiet(monkeypatch)
    # A write from a clock far in the future wins over a later write with a correct clock.
    now = str(int(time.time() * 1000))
    clients[AP].put_item(
        TableName="Odd", Item={"pk": {"S": "future"}, FIELDS.timestamp: {"N": now}}
    )
    StreamPump(ddb_local.endpoint_url, "Odd").run_until_quiet(monkeypatch)
    items = same_everywhere(clients, "Odd")
    assert len(items) == 2
    stored = clients[AP].get_item(TableName="Odd", Key={"pk": odd["pk"]})["Item"]
    assert (
        stored["max"] == clients[US].get_item(TableName="Odd", Key={"pk": odd["pk"]})["Item"]["max"]
    )
    future = clients[AP].get_item(TableName="Odd", Key={"pk": {"S": "future"}})["Item"]
    assert future[FIELDS.timestamp] == {"N": str(10**14)}


def test_items_near_the_size_limit(ddb_local: DynamoDBLocal, clients: dict[str, Any]) -> None:
    # 399 KB replicates; an item so close to 400 KB that the replicator's two attributes do
    # not fit any more is reported, with its key, and not checkpointed past.
    fits = {"pk": {"S": "fits"}, FIELDS.timestamp: {"N": "1"}, "blob": {"B": b"x" * (399 * 1024)}}
    full = {"pk": {"S": "full"}, FIELDS.timestamp: {"N": "1"}, "blob": {"B": b"x" * (LIMIT - 40)}}
    clients[US].put_item(TableName="Odd", Item=fits)
    clients[US].put_item(TableName="Odd", Item=full)
    ((_, records),) = StreamPump(ddb_local.endpoint_url, "Odd").read(US)
    records = [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] in ("fits", "full")]
    specs = [RegionSpec(r, ddb_local.endpoint_url) for r in REGIONS]
    replicator = build_replicator(specs[0], specs, ReplicationSettings())
    try:
        result = replicator.process("Odd", records, from_json=False)
    finally:
        replicator.close()
    full_sequence = next(
        r["dynamodb"]["SequenceNumber"]
        for r in records
        if r["dynamodb"]["Keys"]["pk"]["S"] == "full"
    )
    assert result.failed_sequence(EU) == full_sequence
    error = result.targets[EU].error
    assert error is not None and "size" in str(error).lower(), error
    assert "Item" in clients[EU].get_item(TableName="Odd", Key={"pk": {"S": "fits"}})


def test_target_table_deleted_while_running(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for region, client in clients.items():
        create_table(client, "Gone", region=region)
    pump = StreamPump(ddb_local.endpoint_url, "Gone")
    clients[AP].delete_table(TableName="Gone")
    clients[US].put_item(TableName="Gone", Item={"pk": {"S": "a"}, FIELDS.timestamp: {"N": "1"}})
    with pytest.raises(AssertionError, match="handler reported failures"):
        pump.deliver_from(US, monkeypatch)
    assert "Item" in clients[EU].get_item(TableName="Gone", Key={"pk": {"S": "a"}})
    # Recreated: Lambda's retry of the same batch (a fresh pump re-reads it) catches up.
    clients[AP].create_table(
        TableName="Gone",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    StreamPump(ddb_local.endpoint_url, "Gone").deliver_from(US, monkeypatch)
    assert "Item" in clients[AP].get_item(TableName="Gone", Key={"pk": {"S": "a"}})
