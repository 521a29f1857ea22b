"""No item contents and no credentials in logs, at any level, on success and on failure."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.awslambda import handler as lambda_handler
from dynamodb_replicator.core.codec import record_to_lambda_event_record
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.support import FIELDS, REGIONS, StreamPump, create_table, handler_env

SECRET = "SECRET-CARD-4111111111111111"
CREDENTIAL = "local"  # the secret access key the tests use


def test_logs_never_show_item_values(
    ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Private", region=region)
    us = clients[REGIONS[0]]
    us.put_item(
        TableName="Private",
        Item={"pk": {"S": "ok"}, FIELDS.timestamp: {"N": "1"}, "card": {"S": SECRET}},
    )
    us.put_item(TableName="Private", Item={"pk": {"S": "untimed"}, "card": {"S": SECRET}})
    us.delete_item(TableName="Private", Key={"pk": {"S": "ok"}})
    ((arn, records),) = StreamPump(ddb_local.endpoint_url, "Private").read(REGIONS[0])
    event = json.loads(
        json.dumps(
            {
                "Records": [
                    record_to_lambda_event_record(r, event_source_arn=arn, aws_region=REGIONS[0])
                    for r in records
                ]
            }
        )
    )
    env = handler_env(ddb_local.endpoint_url, REGIONS[0], REGIONS)
    # One target unreachable: the failure paths log too.
    closed = f"http://127.0.0.1:{free_port()}"
    env["REPLICATOR_ENDPOINT_URLS"] = env["REPLICATOR_ENDPOINT_URLS"].replace(
        f"{REGIONS[2]}={ddb_local.endpoint_url}", f"{REGIONS[2]}={closed}"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPLICATOR_LOG_LEVEL", "DEBUG")
    lambda_handler.handler({"Records": []}, None)  # the handler sets its logging up once
    configure("DEBUG", json_format=True)  # the most verbose setting a user can choose
    logging.getLogger("dynamodb_replicator").setLevel(logging.NOTSET)  # as a fresh process
    captured = io.StringIO()
    logging.getLogger().handlers[0].stream = captured  # type: ignore[attr-defined]
    response = lambda_handler.handler(event, None)
    assert response["batchItemFailures"]  # the failure paths really ran
    logged = captured.getvalue()
    assert "batch replicated" in logged and "untimed" in logged  # keys name the failures
    assert SECRET not in logged
    assert f'"{CREDENTIAL}"' not in logged and "aws_secret_access_key" not in logged.lower()
