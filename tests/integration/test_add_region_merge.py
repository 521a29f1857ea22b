"""add-region into a table that already holds data: the conflict rule decides, both ways.

The joining region's newer versions survive and reach the other regions, its older ones are
replaced, what it alone holds is copied out, a delete other regions remember stays deleted,
unversioned items are named (not copied), and an interrupted merge resumes. The configured
regions hold what replication leaves: US's writes and EU's replicas of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.defaults import STATE_TABLE
from dynamodb_replicator.core.model import ItemKey, RegionSpec, Version, pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.progress import ScanSegment
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.ops.backfill import CONDITIONAL_ROUND
from dynamodb_replicator.ops.merge import MERGE_TARGET
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import FIELDS, create_table, ctrl_c, handled_by_resume_points, scan

US, EU = "us-east-1", "eu-west-1"
JOINING = "us-west-2"
TS = FIELDS.timestamp
WCU = 40  # the interrupted merge's --max-wcu: 20 items a second to two regions


def item(key: str, stamp: int | None, value: str) -> dict[str, Any]:
    found: dict[str, Any] = {"pk": {"S": key}, "v": {"S": value}}
    if stamp is not None:
        found[TS] = {"N": str(stamp)}
    return found


def fill(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        client.batch_write_item(RequestItems={table: chunk})


def replicated(endpoint: str, clients: dict[str, Any], table: str, items: list[Any]) -> None:
    """``items`` as replication leaves them: written by US's application, and copied into EU
    by the replicator's own writer (the replica of US's version: origin, marker, nonce).
    Not the application's writes in both regions: those are two versions of one content,
    (T, us-east-1) and (T, eu-west-1), which diff reports (``version``)."""
    fill(clients[US], table, items)
    writer = build_writer(RegionSpec(EU, endpoint), ReplicationSettings())
    puts: list[WriteOp] = [
        PutVersion(
            ItemKey.from_attributes({"pk": i["pk"]}),
            Version.of(i[TS]["N"], US, pad_sequence(str(n + 1))),
            i,
            str(n + 1),
        )
        for n, i in enumerate(items)
    ]
    try:
        assert writer.apply(table, puts).error is None
    finally:
        writer.close()


def regions(endpoint: str, table: str) -> dict[str, Any]:
    """US and EU configured, the joining region's table created like theirs, with a
    stream, empty."""
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in (US, EU, JOINING)}
    for region, client in clients.items():
        create_table(client, table, region=region)
    return clients


def held(clients: dict[str, Any], table: str) -> dict[str, dict[str, str | None]]:
    """Region -> key -> (value, timestamp) of what each region holds."""
    return {
        region: {i["pk"]["S"]: f"{i['v']['S']}@{i[TS]['N']}" for i in scan(client, table)}
        for region, client in clients.items()
    }


def add_region(config: Path, endpoint: str, *extra: str) -> list[str]:
    return [
        "add-region",
        "--config",
        str(config),
        "--region",
        JOINING,
        "--endpoint-url",
        endpoint,
        "--segments",
        "2",
        *extra,
    ]


def test_the_newer_version_in_the_joining_table_survives_and_reaches_every_region(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = regions(endpoint, "Joined")
    common = [item(f"c{n}", 500, "common") for n in range(50)]
    ours = [item("shared", 1000, "old"), item("older", 1000, "newer-elsewhere")]
    replicated(endpoint, clients, "Joined", common + ours)
    for region in (US, EU):
        # A delete both configured regions remember (their tombstones), of version 900.
        writer = build_writer(RegionSpec(region, endpoint), ReplicationSettings())
        gone = DeleteVersion(
            ItemKey.from_attributes({"pk": {"S": "gone"}}), Version.of("900", US), US, "1"
        )
        assert writer.apply("Joined", [gone]).error is None
        writer.close()
    fill(
        clients[JOINING],
        "Joined",
        [
            item("shared", 2000, "new"),
            item("only-new", 1500, "mine"),
            item("older", 100, "stale-here"),
            item("gone", 800, "deleted-elsewhere"),
        ],
    )
    config = write_config(tmp_path / "c.toml", ["Joined"], {US: endpoint, EU: endpoint})
    assert main([*add_region(config, endpoint), "--output", "json"]) == 0
    captured = capsys.readouterr()
    assert "conditional copy and merge both ways: the table held items" in captured.err
    counts = json.loads(captured.out)["counts"]["Joined"]
    # Out: shared and only-new to two regions; older and gone refused twice (newer there,
    # remembered delete). In: 50 common + older; shared and only-new are there already
    # (merged out first: the same versions); the delete of gone.
    assert counts == {
        "copied_in": 51,
        "copied_out": 4,
        "already_newer": 6,
        "unversioned": 0,
        "remembered_deletes": 1,
    }, captured.err
    everywhere = held(clients, "Joined")
    for region, found in everywhere.items():
        assert found["shared"] == "new@2000", region
        assert found["only-new"] == "mine@1500", region
        assert found["older"] == "newer-elsewhere@1000", region
        assert "gone" not in found, region
        assert len(found) == 53, region
    assert main(["diff", "--config", str(config)]) == 0


def test_unversioned_items_of_the_joining_table_are_named_and_not_copied(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = regions(endpoint, "Legacy")
    replicated(endpoint, clients, "Legacy", [item("a", 5, "a")])
    fill(clients[JOINING], "Legacy", [item(f"legacy-{n}", None, "x") for n in range(7)])
    config = write_config(tmp_path / "c.toml", ["Legacy"], {US: endpoint, EU: endpoint})
    # No runner replicates this table: the legacy items that stay out differ for good, and
    # the final diff would wait its whole default settle timeout (60 s) for them.
    assert main(add_region(config, endpoint, "--settle-timeout", "1")) == 1
    out = capsys.readouterr().out
    assert "unversioned 7" in out and "version-items" in out, out
    assert '{"pk": {"S": "legacy-' in out  # a few keys shown, in the one key format
    assert all(not k.startswith("legacy") for k in held({US: clients[US]}, "Legacy")[US])


def test_an_empty_table_created_beforehand_gets_the_fast_copy(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = regions(endpoint, "Empty")
    replicated(endpoint, clients, "Empty", [item(f"e{n}", 7, "e") for n in range(120)])
    config = write_config(tmp_path / "c.toml", ["Empty"], {US: endpoint, EU: endpoint})
    assert main(add_region(config, endpoint)) == 0
    out = capsys.readouterr().out
    assert "Empty: found (same schema)" in out
    assert "fast copy (batch writes): the table was empty when this add-region run" in out
    assert "copied in 120, copied out 0" in out
    assert len(held(clients, "Empty")[JOINING]) == 120


def test_an_interrupted_merge_stops_between_rounds_and_resumes(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = regions(endpoint, "Big")
    replicated(endpoint, clients, "Big", [item(f"b{n}", 5, "b") for n in range(10)])
    fill(clients[JOINING], "Big", [item(f"j{n}", 3000, "j") for n in range(1200)])
    config = write_config(tmp_path / "c.toml", ["Big"], {US: endpoint, EU: endpoint})
    executable = Path(sys.executable).parent / "dynamodb-replicator"
    argv = add_region(config, endpoint, "--max-wcu", str(WCU))
    copy = subprocess.Popen(
        [str(executable), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 60
    while True:  # the merge is copying out: part of the joining table reached US
        counted = time.monotonic()
        merged = clients[US].scan(TableName="Big", Select="COUNT")["Count"] - 10
        if merged >= 60:
            break
        assert copy.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    signalled = time.monotonic()
    stopped_in = ctrl_c(copy)  # 1,140 items left, 2 units each: 57 s at 40 a second
    output = copy.communicate(timeout=60)[0].decode()
    assert copy.returncode == 130, output
    partial = clients[US].scan(TableName="Big", Select="COUNT")["Count"] - 10
    with capsys.disabled():  # the measured time, in the test's output
        print(f"merge stopped {stopped_in:.2f} s after SIGINT, {partial - merged} items later")
    # After the signal each of the 2 segments finishes its round in flight (10 keys, to
    # both regions at once) and starts no other; between the count and the signal the
    # merge went on at the rate limit (2 units an item, plus the one-second burst).
    allowance = 2 * CONDITIONAL_ROUND + WCU / 2 * (signalled - counted + 1)
    assert partial - merged <= allowance, (merged, partial, allowance)
    # The resume points are the last items written, in both regions: nothing skipped.
    state = DynamoStateStore(clients[JOINING], STATE_TABLE, JOINING)
    scans = [ScanSegment("Big", JOINING, MERGE_TARGET, s, 2) for s in range(2)]
    handled = handled_by_resume_points(clients[JOINING], "Big", state, scans)
    for region in (US, EU):
        assert {k for k in held(clients, "Big")[region] if k.startswith("j")} == handled
    assert f"resume with: dynamodb-replicator add-region --config {config}" in output, output
    assert main(add_region(config, endpoint)) == 0  # the same command again
    out = capsys.readouterr().out
    assert "merge both ways" in out and "(recorded when this copy started)" in out, out
    assert re.search(r"[12] segments resumed", out), out
    assert all(len(found) == 1210 for found in held(clients, "Big").values())
    assert main(["diff", "--config", str(config)]) == 0
