"""The Lambda handler's conflict log and EMF metrics (its standard output is the function's
CloudWatch Logs stream), on DynamoDB Local with real stream records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, StreamPump, create_table

US, EU = "us-east-1", "eu-west-1"
SECRET = "do-not-log-this-value"


def item(pk: str, stamp: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, FIELDS.timestamp: {"N": stamp}, "secret": {"S": SECRET}}


def test_handler_prints_conflicts_and_emf_metrics(
    ddb_local: DynamoDBLocal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Emitted", region=region)
    clients[US].put_item(TableName="Emitted", Item=item("plain", "1700000000000"))
    clients[US].put_item(TableName="Emitted", Item=item("clash", "1700000000100"))
    clients[EU].put_item(TableName="Emitted", Item=item("clash", "1700000000200"))
    capsys.readouterr()

    StreamPump(ddb_local.endpoint_url, "Emitted", (US, EU)).run_until_quiet(monkeypatch)

    out = capsys.readouterr().out
    assert SECRET not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    conflicts = {(c["outcome"], c["region"]): c for c in lines if "outcome" in c}
    assert set(conflicts) == {("lost", EU), ("won", US)}
    lost = conflicts[("lost", EU)]
    assert lost["key"] == {"pk": {"S": "clash"}} and lost["source"] == US
    assert lost["change"] == {"timestamp": "1700000000100", "origin": US}
    assert lost["other"] == {"timestamp": "1700000000200", "origin": EU}
    assert conflicts[("won", US)]["other"] == {"timestamp": "1700000000100", "origin": US}

    emf = [line for line in lines if "_aws" in line]
    totals: dict[tuple[str, str, str], float] = {}
    for document in emf:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "DynamoDBReplicator"
        assert directive["Dimensions"] == [["SourceRegion", "Table", "TargetRegion"]]
        for metric in directive["Metrics"]:  # every declared metric has its value
            name = metric["Name"]
            assert isinstance(document[name], (int, float)), name
            pair = (document["SourceRegion"], document["TargetRegion"], name)
            totals[pair] = totals.get(pair, 0) + document[name]
    assert totals[(US, EU, "Applied")] == 1  # "plain"
    assert totals[(US, EU, "Stale")] == 1 and totals[(US, EU, "ConflictsLost")] == 1
    assert totals[(EU, US, "Applied")] == 1 and totals[(EU, US, "ConflictsWon")] == 1
    assert totals[(US, EU, "Failed")] == 0 and totals[(EU, US, "Failed")] == 0
    assert (US, EU, "LagSeconds") in totals  # epoch-millisecond __timestamp: lag is known
