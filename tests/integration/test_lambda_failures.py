"""Bad input on the wire: an unreachable target, a missing tombstone table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.awslambda import handler as lambda_handler
from dynamodb_replicator.core.codec import record_to_lambda_event_record
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.support import FIELDS, StreamPump, create_table, handler_env

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
REGIONS = (US, EU, AP)


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Orders", region=region)
    yield clients


def item(pk: str, ts: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, FIELDS.timestamp: {"N": ts}}


def test_unreachable_region_is_reported_and_caught_up_later(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        clients[US].put_item(TableName="Orders", Item=item(f"k{n}", "1"))
    pump = StreamPump(ddb_local.endpoint_url, "Orders", REGIONS)
    ((arn, records),) = pump.read(US)
    env = handler_env(ddb_local.endpoint_url, US, REGIONS)
    closed = f"http://127.0.0.1:{free_port()}"
    env["REPLICATOR_ENDPOINT_URLS"] = (
        f"{US}={ddb_local.endpoint_url},{EU}={ddb_local.endpoint_url},{AP}={closed}"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    event = {
        "Records": [
            record_to_lambda_event_record(r, event_source_arn=arn, aws_region=US) for r in records
        ]
    }
    response = lambda_handler.handler(event, None)
    # Lambda will retry from the first record: nothing is lost.
    assert response == {
        "batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
    }
    # The reachable region was not held back.
    assert len(clients[EU].scan(TableName="Orders")["Items"]) == 5
    assert clients[AP].scan(TableName="Orders")["Items"] == []

    # The region is back: the retried batch catches it up.
    monkeypatch.setenv(
        "REPLICATOR_ENDPOINT_URLS",
        handler_env(ddb_local.endpoint_url, US, REGIONS)["REPLICATOR_ENDPOINT_URLS"],
    )
    assert lambda_handler.handler(event, None) == {"batchItemFailures": []}
    assert len(clients[AP].scan(TableName="Orders")["Items"]) == 5


def test_missing_tombstone_table_is_a_clear_failure(
    ddb_local: DynamoDBLocal, clients: dict[str, Any]
) -> None:
    client = clients[EU]
    client.create_table(
        TableName="NoTombs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    client.put_item(TableName="NoTombs", Item=item("a", "1"))
    ((_, records),) = StreamPump(ddb_local.endpoint_url, "NoTombs", REGIONS).read(EU)
    specs = [RegionSpec(r, ddb_local.endpoint_url) for r in (EU, US, AP)]
    replicator = build_replicator(specs[0], specs, ReplicationSettings())
    try:
        result = replicator.process("NoTombs", records, from_json=False)
    finally:
        replicator.close()
    sequence = records[0]["dynamodb"]["SequenceNumber"]
    assert result.failed_sequence() == sequence
    error = result.targets[US].error
    assert error is not None and "NoTombs.__tombstones" in str(error)


class BlackHole:
    """Accepts TCP connections and never answers (a region whose load balancer hangs)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)  # the kernel completes the handshakes; nobody reads

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.listener.close()


class Context:
    """The part of Lambda's context object the handler reads."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


def test_the_handler_keeps_the_invocation_deadline(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 inserts, 12 s left, one target that accepts connections and never answers: the
    handler returns before the deadline, naming the first record; the healthy target got
    every record; once the target answers, the retried batch completes."""
    for n in range(40):
        clients[EU].put_item(TableName="Orders", Item=item(f"deadline{n}", "1"))
    ((arn, records),) = StreamPump(ddb_local.endpoint_url, "Orders", REGIONS).read(EU)
    hole = BlackHole()
    env = handler_env(ddb_local.endpoint_url, EU, REGIONS)
    env["REPLICATOR_ENDPOINT_URLS"] = (
        f"{US}={ddb_local.endpoint_url},{EU}={ddb_local.endpoint_url},{AP}={hole.endpoint_url}"
    )
    # Writes stop 1.2 s + 3 s before the end (7.8 s in): the black hole's requests time out
    # by then; 3 s lets the healthy target answer on a busy machine.
    env["REPLICATOR_REQUEST_TIMEOUT_SECONDS"] = "3"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    event = {
        "Records": [
            record_to_lambda_event_record(r, event_source_arn=arn, aws_region=EU) for r in records
        ]
    }
    try:
        started = time.monotonic()
        response = lambda_handler.handler(event, Context(12.0))
        took = time.monotonic() - started
    finally:
        hole.close()
    first = records[0]["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": first}]}
    assert took < 12.0, f"the handler returned after {took:.1f} s of 12"
    keys = {i["pk"]["S"] for i in clients[US].scan(TableName="Orders")["Items"]}
    assert {f"deadline{n}" for n in range(40)} <= keys

    monkeypatch.setenv(
        "REPLICATOR_ENDPOINT_URLS",
        handler_env(ddb_local.endpoint_url, EU, REGIONS)["REPLICATOR_ENDPOINT_URLS"],
    )
    monkeypatch.delenv("REPLICATOR_REQUEST_TIMEOUT_SECONDS")  # the default 5 s again
    assert lambda_handler.handler(event, Context(30.0)) == {"batchItemFailures": []}
    keys = {i["pk"]["S"] for i in clients[AP].scan(TableName="Orders")["Items"]}
    assert {f"deadline{n}" for n in range(40)} <= keys


# The Lambda zip carries no native wheels: orjson is absent there. The handler's writes
# still go through the lean transport (its send-by instant bounds when they land).
_WITHOUT_ORJSON = """
import json, sys
sys.modules["orjson"] = None  # an import of it fails, as in the Lambda zip
from dynamodb_replicator.aws import lean
made = []
init = lean.LeanClient.__init__
def counting(self, *args, **kwargs):
    made.append(1)
    init(self, *args, **kwargs)
lean.LeanClient.__init__ = counting
from dynamodb_replicator.awslambda import handler
event = json.loads(sys.stdin.read())
print(json.dumps({"response": handler.handler(event, None), "lean_clients": len(made),
                  "orjson": sys.modules.get("orjson") is not None}))
"""


def test_the_handler_writes_through_the_lean_transport_without_orjson(
    ddb_local: DynamoDBLocal, clients: dict[str, Any]
) -> None:
    clients[US].put_item(TableName="Orders", Item=item("no-orjson", "7"))
    pump = StreamPump(ddb_local.endpoint_url, "Orders", REGIONS)
    ((arn, records),) = pump.read(US)
    event = {
        "Records": [
            record_to_lambda_event_record(r, event_source_arn=arn, aws_region=US) for r in records
        ]
    }
    env = {**os.environ, **handler_env(ddb_local.endpoint_url, US, REGIONS)}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ORJSON],
        input=json.dumps(event, default=str),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["orjson"] is False, "orjson was importable: the test ran the fast codec"
    assert found["response"] == {"batchItemFailures": []}
    assert found["lean_clients"] >= len(REGIONS) - 1, "the writes went through botocore"
    key = {"pk": {"S": "no-orjson"}}
    for region in (EU, AP):
        assert clients[region].get_item(TableName="Orders", Key=key)["Item"]["pk"] == key["pk"]
