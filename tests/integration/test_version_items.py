"""``version-items``: existing items without ``__timestamp`` get one, in place, resumably;
versioned items are left alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.ops.versioning import Versioner
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import FIELDS, create_table, scan

US, EU = "us-east-1", "eu-west-1"
TS = FIELDS.timestamp


def fill(client: Any, table: str) -> None:
    requests = [{"PutRequest": {"Item": {"pk": {"S": f"old{n}"}}}} for n in range(250)]
    requests += [
        {"PutRequest": {"Item": {"pk": {"S": f"new{n}"}, TS: {"N": "7"}}}} for n in range(50)
    ]
    for start in range(0, len(requests), 25):
        client.batch_write_item(RequestItems={table: requests[start : start + 25]})


def test_every_item_gets_a_version_and_versioned_ones_keep_theirs(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client("dynamodb", RegionSpec(US, ddb_local.endpoint_url))
    create_table(client, "Legacy", region=US)
    fill(client, "Legacy")
    endpoints = {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    config = write_config(tmp_path / "c.toml", ["Legacy"], endpoints)
    argv = ["version-items", "--config", str(config), "--region", US, "--timestamp", "1000"]
    assert main([*argv, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["tables"]["Legacy"]
    assert counts["versioned"] == 250 and counts["already_versioned"] == 50
    items = {i["pk"]["S"]: i for i in scan(client, "Legacy")}
    assert all(items[f"old{n}"][TS] == {"N": "1000"} for n in range(250))
    assert all(items[f"new{n}"][TS] == {"N": "7"} for n in range(50))
    # Run again: resumed from the saved progress, nothing left to do.
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["Legacy"]["scanned"] == 0


def test_a_stopped_run_resumes_where_it_stopped(ddb_local: DynamoDBLocal) -> None:
    client = make_client("dynamodb", RegionSpec(US, ddb_local.endpoint_url))
    create_table(client, "Resumed", region=US)
    fill(client, "Resumed")
    ensure_state_table(client, "state", US)
    state = DynamoStateStore(client, "state", US)
    stop = threading.Event()

    def stop_after_a_page(_n: int) -> None:
        stop.set()

    first = Versioner(
        client,
        US,
        "Resumed",
        ["pk"],
        "2000",
        state,
        stop=stop,
        on_items=stop_after_a_page,
        page_size=100,
    )
    partial = first.run(segments=1)
    assert 0 < partial.scanned < 300
    second = Versioner(client, US, "Resumed", ["pk"], "2000", state).run(segments=1)
    assert partial.scanned + second.scanned == 300
    assert partial.versioned + second.versioned == 250
    assert all(TS in item for item in scan(client, "Resumed"))
