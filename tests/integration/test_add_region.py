"""Add a fourth region to a live, non-empty table while writes go on; then diff all four.

The joining region's table exists and holds data of its own (the merge both ways); a table
this run creates gets the fast copy, resumable after Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.schema import create_like, describe_shape
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.defaults import STATE_TABLE
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.progress import ScanSegment
from dynamodb_replicator.ops.backfill import FAST_ROUND
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import RunnerProcess, write_config
from tests.support import FIELDS, REGIONS, ctrl_c, handled_by_resume_points, scan
from tests.workload import BackgroundLoad, Workload, wait_until_converged

US, EU, AP = REGIONS
NEW = "us-west-2"
PRELOAD = 2000
WCU = 25  # the interrupted copy's --max-wcu: a round of 25 items a second


def live_table(endpoint: str, table: str) -> dict[str, Any]:
    """Three regions already holding the same PRELOAD items; streams enabled afterwards, as on
    a table that has replicated for a while."""
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in REGIONS}
    for region, client in clients.items():
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for start in range(0, PRELOAD, 25):
            requests = []
            for n in range(start, start + 25):
                item = {"pk": {"S": f"pre-{n}"}, FIELDS.timestamp: {"N": "500"}, "v": {"N": str(n)}}
                if region != US:
                    item.update({FIELDS.origin: {"S": US}, FIELDS.marker: {"N": "500"}})
                requests.append({"PutRequest": {"Item": item}})
            client.batch_write_item(RequestItems={table: requests})
        client.update_table(
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        ensure_tombstone_table(client, table, region=region)
    return clients


def checkpointed(clients: dict[str, Any], table: str, target: str) -> bool:
    """Every region's runner checkpoints hold a position for ``target`` (add-region seeds
    the new region from those)."""
    for region, client in clients.items():
        state = DynamoStateStore(client, STATE_TABLE, region)
        if describe_table(client, STATE_TABLE, region) is None or not any(
            f"pos#{target}" in item for item in state.checkpoint_items(table)
        ):
            return False
    return True


def preloaded() -> dict[str, dict[str, Any] | None]:
    return {
        f"pre-{n}": {"pk": {"S": f"pre-{n}"}, FIELDS.timestamp: {"N": "500"}, "v": {"N": str(n)}}
        for n in range(PRELOAD)
    }


def joining_table(endpoint: str, source: Any) -> dict[str, dict[str, Any]]:
    """The table in the new region exists and holds data: a newer version of ``pre-0``
    (written there, unmarked) and an item no other region has."""
    shape = describe_shape(source, "Live", US)
    assert shape is not None
    joining = make_client("dynamodb", RegionSpec(NEW, endpoint))
    assert create_like(joining, shape, NEW)
    own = {
        "pre-0": {"pk": {"S": "pre-0"}, FIELDS.timestamp: {"N": "999999"}, "v": {"S": "new"}},
        "only-new": {"pk": {"S": "only-new"}, FIELDS.timestamp: {"N": "7"}, "v": {"S": "j"}},
    }
    for item in own.values():
        joining.put_item(TableName="Live", Item=item)
    return own


def test_join_a_region_holding_data_under_load_then_all_four_hold_the_winners(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = live_table(endpoint, "Live")
    own = joining_table(endpoint, clients[US])
    config = write_config(
        tmp_path / "live.toml", ["Live"], dict.fromkeys(REGIONS, endpoint), lease_timeout_seconds=5
    )
    runner = RunnerProcess(config, tmp_path / "runner.log").start()
    try:
        # 200 hot keys, ~100 writes/s across the regions: at any moment many keys have a
        # change in flight, so add-region's final diff must settle them, not report them.
        workload = Workload(clients, table="Live", keys=200, seed=11)
        load = BackgroundLoad(workload, per_second=100, seconds=45).start()
        marker = {"pk": {"S": "marker"}, FIELDS.timestamp: {"N": "1"}}
        clients[US].put_item(TableName="Live", Item=marker)
        deadline = time.monotonic() + 90  # a runner starting on a busy machine
        while not all(  # replication flows: there are positions to start the new region at
            "Item" in clients[r].get_item(TableName="Live", Key={"pk": {"S": "marker"}})
            for r in (EU, AP)
        ) or not checkpointed(clients, "Live", US):
            assert time.monotonic() < deadline, (tmp_path / "runner.log").read_text()[-3000:]
            time.sleep(0.2)
        began = time.monotonic()
        code = main(
            [
                "add-region",
                "--config",
                str(config),
                "--region",
                NEW,
                "--endpoint-url",
                endpoint,
                "--segments",
                "3",
            ]
        )
        took = time.monotonic() - began
        writes_during = len(workload.events)
        rate = load.rate()
        load.stop()
        output = capsys.readouterr().out
        with capsys.disabled():
            print(f"\nadd-region took {took:.1f} s under {rate:.0f} writes/s")
        assert code == 0, output + (tmp_path / "runner.log").read_text()[-3000:]
        # The reload took the new region up without stopping a shard worker: from then on
        # no write failed for lack of time or a closed pool. (Before it, a runner catching
        # up on a loaded machine may miss its 5 s lease's deadline: not this test's subject.)
        log = (tmp_path / "runner.log").read_text()
        reload = "config changed: starting and stopping only the pairs it concerns"
        assert reload in log, log[-3000:]
        after = log[log.index(reload) :]
        for failure in ("no time left", "cannot schedule new futures"):
            assert failure not in after, after[after.index(failure) - 1500 :][:3000]
        assert writes_during > 100, f"only {writes_during} writes during {took:.1f} s"
        assert "seeded 0 " not in output and "matches us-east-1" in output, output
        assert "conditional copy and merge both ways" in output, output
        assert "copied out 6," in output, output  # pre-0 and only-new, to three regions
        assert NEW in [r.name for r in load_config(config).regions]
        all_four = {**clients, NEW: make_client("dynamodb", RegionSpec(NEW, endpoint))}
        expected = {**preloaded(), **own, **workload.expected(), "marker": marker}
        seconds = wait_until_converged(all_four, "Live", expected)
        print(f"four regions converged {seconds:.1f} s after the load stopped")
        assert main(["diff", "--config", str(config)]) == 0
        assert "identical in every region" in capsys.readouterr().out
    finally:
        runner.close()


def test_interrupted_copy_resumes(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    live_table(endpoint, "Resume")
    config = write_config(tmp_path / "resume.toml", ["Resume"], dict.fromkeys(REGIONS, endpoint))
    executable = Path(sys.executable).parent / "dynamodb-replicator"
    copy = subprocess.Popen(
        [
            str(executable),
            "add-region",
            "--config",
            str(config),
            "--region",
            NEW,
            "--endpoint-url",
            endpoint,
            "--max-wcu",
            str(WCU),
            "--segments",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    target = make_client("dynamodb", RegionSpec(NEW, endpoint))
    deadline = time.monotonic() + 60
    while True:  # interrupt once part of the copy is done
        counted = time.monotonic()
        try:
            count = target.scan(TableName="Resume", Select="COUNT")["Count"]
        except target.exceptions.ResourceNotFoundException:
            count = 0
        if count >= 100:
            break
        assert copy.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    signalled = time.monotonic()
    stopped_in = ctrl_c(copy)  # 1,900 items left: 76 s of work at 25 a second
    output, _ = copy.communicate(timeout=60)
    assert copy.returncode == 130, output.decode()
    partial = target.scan(TableName="Resume", Select="COUNT")["Count"]
    with capsys.disabled():  # the measured time, in the test's output
        print(f"copy stopped {stopped_in:.2f} s after SIGINT, {partial - count} items later")
    # After the signal each of the 2 segments finishes its round in flight (one batch of
    # 25) and starts no other; between the count and the signal the copy went on at the rate
    # limit (plus its one-second burst). Stopping at a slice's end would add up to 50 more.
    allowance = 2 * FAST_ROUND + WCU * (signalled - counted + 1)
    assert 100 <= partial <= count + allowance < PRELOAD, (count, partial, allowance)
    # The resume points are the last items written: nothing past them, nothing skipped.
    state = DynamoStateStore(target, STATE_TABLE, NEW)
    scans = [ScanSegment("Resume", US, NEW, s, 2) for s in range(2)]
    source = make_client("dynamodb", RegionSpec(US, endpoint))
    written = {item["pk"]["S"] for item in scan(target, "Resume")}
    assert written == handled_by_resume_points(source, "Resume", state, scans)
    assert f"resume with: dynamodb-replicator add-region --config {config}" in output.decode()
    again = ["add-region", "--config", str(config), "--region", NEW, "--endpoint-url", endpoint]
    assert main([*again, "--segments", "2"]) == 0  # the same command again
    output_text = capsys.readouterr().out
    assert "2 segments resumed" in output_text
    # The table exists now and holds a part: the mode recorded by the first run holds.
    assert "fast copy (batch writes): this add-region run created the table (recorded" in (
        output_text
    )
    assert target.scan(TableName="Resume", Select="COUNT")["Count"] == PRELOAD


def test_add_region_bad_input(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    live_table(endpoint, "Shapes")
    config = str(write_config(tmp_path / "bad.toml", ["Shapes"], dict.fromkeys(REGIONS, endpoint)))
    add = ["add-region", "--config", config, "--endpoint-url", endpoint]
    assert main([*add, "--region", NEW, "--from", "mars-north-1"]) == 2
    assert "--from mars-north-1: not a configured region" in capsys.readouterr().err
    other = make_client("dynamodb", RegionSpec("sa-east-1", endpoint))
    other.create_table(
        TableName="Shapes",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert main([*add, "--region", "sa-east-1"]) == 2
    assert "already exists in sa-east-1 with another schema" in capsys.readouterr().err
    missing = str(write_config(tmp_path / "m.toml", ["Absent"], dict.fromkeys(REGIONS, endpoint)))
    assert (
        main(["add-region", "--config", missing, "--region", NEW, "--endpoint-url", endpoint]) == 2
    )
    assert "table Absent does not exist in the source region us-east-1" in capsys.readouterr().err
    assert "sa-east-1" not in Path(config).read_text()  # nothing half-done in the config


def test_schema_copy_keeps_indexes_capacity_and_ttl(ddb_local: DynamoDBLocal) -> None:
    endpoint = ddb_local.endpoint_url
    source = make_client("dynamodb", RegionSpec(US, endpoint))
    target = make_client("dynamodb", RegionSpec("eu-central-1", endpoint))
    throughput = {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3}
    source.create_table(
        TableName="Indexed",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "email", "AttributeType": "S"},
            {"AttributeName": "placed", "AttributeType": "N"},
        ],
        ProvisionedThroughput=throughput,
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-email",
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total"]},
                "ProvisionedThroughput": throughput,
            }
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "by-placed",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "placed", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    source.update_time_to_live(
        TableName="Indexed", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    shape = describe_shape(source, "Indexed", US)
    assert shape is not None and create_like(target, shape, "eu-central-1")
    copied = describe_shape(target, "Indexed", "eu-central-1")
    assert copied is not None and copied.signature() == shape.signature()
    assert copied.ttl_attribute == "expires"
    described = target.describe_table(TableName="Indexed")["Table"]
    assert described["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    assert described["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert not create_like(target, shape, "eu-central-1")  # a second run finds it, same schema
