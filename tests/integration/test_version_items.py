"""``version-items``: existing items without ``__timestamp`` get one, in place, resumably;
versioned items are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.defaults import STATE_TABLE
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.ops.versioning import Versioner
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import FIELDS, create_table, ctrl_c, scan

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
    # A finished run is no resume point: a second run scans everything again and versions
    # what has no version since, with its own timestamp.
    fill_more = [{"PutRequest": {"Item": {"pk": {"S": f"later{n}"}}}} for n in range(5)]
    client.batch_write_item(RequestItems={"Legacy": fill_more})
    again = ["version-items", "--config", str(config), "--region", US, "--timestamp", "3000"]
    assert main([*again, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["tables"]["Legacy"]
    assert counts["scanned"] == 305 and counts["versioned"] == 5
    assert scan_one(client, "Legacy", "later0")[TS] == {"N": "3000"}
    assert main([*again, "--resume"]) == 2  # nothing was interrupted
    assert "no interrupted version-items run" in capsys.readouterr().err


def test_the_timestamp_is_required_and_a_refused_run_writes_nothing(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = "me-south-1"  # a region of its own: no state table made by another test
    client = make_client("dynamodb", RegionSpec(here, ddb_local.endpoint_url))
    create_table(client, "NoStamp", region=here)
    config = write_config(
        tmp_path / "c.toml", ["NoStamp"], {here: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    )
    command = ["version-items", "--config", str(config), "--region", here]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "--timestamp is required" in error and "for example --timestamp 1" in error
    assert main([*command, "--timestamp", "1000", "--table", "NoStam"]) == 2
    assert "table NoStam is not in the config (tables: NoStamp)" in capsys.readouterr().err
    assert describe_table(client, STATE_TABLE, here) is None  # nothing made by bad input


def scan_one(client: Any, table: str, key: str) -> dict[str, Any]:
    return dict(client.get_item(TableName=table, Key={"pk": {"S": key}})["Item"])


def test_ctrl_c_stops_the_run_and_resume_continues_it(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = make_client("dynamodb", RegionSpec(US, ddb_local.endpoint_url))
    create_table(client, "Slow", region=US)
    fill(client, "Slow")
    config = write_config(
        tmp_path / "c.toml", ["Slow"], {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    )
    argv = ["version-items", "--config", str(config), "--region", US, "--segments", "2"]
    executable = Path(sys.executable).parent / "dynamodb-replicator"
    run = subprocess.Popen(
        [str(executable), *argv, "--timestamp", "4000", "--max-wcu", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 60
    while (before := versioned(client, "Slow", "4000")) < 40:  # it is writing
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    stopped_in = ctrl_c(run)  # 210 items left: 10 s of work at 20 a second
    output = run.communicate(timeout=60)[0].decode()
    assert run.returncode == 130, output
    partial = versioned(client, "Slow", "4000")
    with capsys.disabled():  # the measured time, in the test's output
        print(f"version-items stopped {stopped_in:.2f} s after SIGINT, {partial - before} later")
    # Each of the 2 segments ends its slice (25 items) and may have begun one more since
    # the count: not the rest of its page (all 250 items).
    assert partial - before <= 4 * 25 and partial < 250, (before, partial)
    assert "resume with: dynamodb-replicator version-items" in output and "--resume" in output
    assert "use the same in every other region (--timestamp 4000)" in output, output
    capsys.readouterr()
    assert main([*argv, "--resume", "--json"]) == 0  # no --timestamp: the run's own
    counts = json.loads(capsys.readouterr().out)["tables"]["Slow"]
    assert counts["versioned"] == 250 - partial and counts["scanned"] < 300
    assert versioned(client, "Slow", "4000") == 250


def versioned(client: Any, table: str, stamp: str) -> int:
    return sum(item.get(TS) == {"N": stamp} for item in scan(client, table))


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
    second = Versioner(client, US, "Resumed", ["pk"], "2000", state).run(segments=1, resume=True)
    assert partial.scanned + second.scanned == 300
    assert partial.versioned + second.versioned == 250
    assert all(TS in item for item in scan(client, "Resumed"))
