"""Poison records on DynamoDB Local: parked after ``park_after_seconds``, replication moves
on, ``status`` names them and exits 1, ``redrive`` applies them once fixed; and captured
Lambda batches in an S3 failure store (moto) replayed by the same command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.codec import record_to_lambda_event_record
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_observability import poll
from tests.moto_server import MotoServer
from tests.runner_process import RunnerProcess, write_config
from tests.support import FIELDS, REGIONS, create_table

US, EU, _ = REGIONS


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "dynamodb-replicator"
    done = subprocess.run(
        [str(executable), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode in (0, 1), done.stderr
    return done


def get(client: Any, table: str, key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(
        TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True
    ).get("Item")
    return found


def test_a_poison_record_is_parked_shown_and_redriven(
    ddb_local: DynamoDBLocal, runners: list[RunnerProcess], tmp_path: Path
) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Poisoned", region=region)
    config = write_config(
        tmp_path / "c.toml",
        ["Poisoned"],
        dict.fromkeys((US, EU), ddb_local.endpoint_url),
        missing_timestamp="fail",
        park_after_seconds=2,
        lease_timeout_seconds=3,
    )
    runner = RunnerProcess(config, tmp_path / "w.log").start()
    runners.append(runner)
    runner.wait_for_leases(2)
    stamp = int(time.time() * 1000)
    # two versions of one bad item: the second parks at once, redrive replays it alone
    clients[US].put_item(TableName="Poisoned", Item={"pk": {"S": "bad"}, "v": {"S": "x"}})
    clients[US].put_item(TableName="Poisoned", Item={"pk": {"S": "bad"}, "v": {"S": "y"}})
    after = {"pk": {"S": "after"}, FIELDS.timestamp: {"N": str(stamp)}}
    clients[US].put_item(TableName="Poisoned", Item=after)
    try:
        # Replication moves on past the parked record: the later write arrives.
        poll(lambda: get(clients[EU], "Poisoned", "after"), "the write after the poison record", 90)

        def parked_and_resolved() -> subprocess.CompletedProcess[str] | None:
            shown = cli("status", "--config", str(config), "--json")
            report = json.loads(shown.stdout)
            (pair,) = [p for p in report["pairs"] if (p["source"], p["target"]) == (US, EU)]
            # the shard moved on past the parked records: their error is resolved
            done = len(report["parked"]) == 2 and pair["last_error"] is None
            return shown if shown.returncode == 1 and done else None

        shown = poll(parked_and_resolved, "status to show the parked records, no error")
        for parked in json.loads(shown.stdout)["parked"]:
            assert parked["key"] == {"pk": {"S": "bad"}} and "__timestamp" in parked["reason"]
            assert EU in parked["targets"]
        text = cli("status", "--config", str(config))
        assert (
            text.returncode == 1 and "parked: Poisoned" in text.stdout and "redrive" in text.stdout
        )
        assert "record parked" in (tmp_path / "w.log").read_text()  # never silent
        assert get(clients[EU], "Poisoned", "bad") is None
        runner.terminate()  # what follows is redrive's work alone

        unfixed = cli("redrive", "--config", str(config))
        assert unfixed.returncode == 1 and "fix the item in us-east-1" in unfixed.stdout
        logged = [json.loads(line) for line in unfixed.stderr.splitlines()]
        assert logged and all(
            (line["key"], line["region"]) == ({"pk": {"S": "bad"}}, US) for line in logged
        ), unfixed.stderr

        fixed = {"pk": {"S": "bad"}, "v": {"S": "x"}, FIELDS.timestamp: {"N": str(stamp + 1)}}
        clients[US].put_item(TableName="Poisoned", Item=fixed)
        dry = cli("redrive", "--config", str(config), "--dry-run")
        assert dry.returncode == 0 and "would replay 1 of 1" in dry.stdout
        planned = json.loads(cli("redrive", "--config", str(config), "--dry-run", "--json").stdout)
        (replay,) = planned["replays"]
        assert replay["key"] == {"pk": {"S": "bad"}} and replay["source"] == US
        assert get(clients[EU], "Poisoned", "bad") is None  # a dry run writes nothing
        done = cli("redrive", "--config", str(config))
        assert done.returncode == 0, done.stdout
        # the newest version alone, the older one removed with it
        assert "replayed 1 of 1 (1 records" in done.stdout and "removed 2" in done.stdout
        replicated = get(clients[EU], "Poisoned", "bad")
        assert replicated is not None and replicated[FIELDS.timestamp] == {"N": str(stamp + 1)}
        again = cli("redrive", "--config", str(config))  # repeatable: nothing left
        assert again.returncode == 0 and "replayed 0 of 0" in again.stdout
        assert json.loads(cli("status", "--config", str(config), "--json").stdout)["parked"] == []
    except AssertionError:
        print((tmp_path / "w.log").read_text()[-4000:])
        raise


def test_a_restarted_runner_parks_a_parked_keys_next_version_at_once(
    ddb_local: DynamoDBLocal, runners: list[RunnerProcess], tmp_path: Path
) -> None:
    """Parking holds across a restart: the runner that comes back (here with a park_after
    of an hour) parks the next bad version of a parked key without waiting again."""
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Restarted", region=region)
    endpoints = dict.fromkeys((US, EU), ddb_local.endpoint_url)
    settings = {"missing_timestamp": "fail", "lease_timeout_seconds": 3}
    config = write_config(
        tmp_path / "c.toml", ["Restarted"], endpoints, **settings, park_after_seconds=2
    )
    first = RunnerProcess(config, tmp_path / "first.log").start()
    runners.append(first)
    first.wait_for_leases(2)
    clients[US].put_item(TableName="Restarted", Item={"pk": {"S": "bad"}, "v": {"S": "1"}})
    (parked,) = first.wait_for("record parked", 1, timeout=90)
    assert first.terminate() == 0
    write_config(config, ["Restarted"], endpoints, **settings, park_after_seconds=3600)
    second = RunnerProcess(config, tmp_path / "second.log").start()
    runners.append(second)
    second.wait_for_leases(2)
    clients[US].put_item(TableName="Restarted", Item={"pk": {"S": "bad"}, "v": {"S": "2"}})
    stamp = str(int(time.time() * 1000))
    after = {"pk": {"S": "after"}, FIELDS.timestamp: {"N": stamp}}
    clients[US].put_item(TableName="Restarted", Item=after)
    poll(lambda: get(clients[EU], "Restarted", "after"), "the write after the second version")

    def both_parked() -> list[Any] | None:
        shown = json.loads(cli("status", "--config", str(config), "--json").stdout)["parked"]
        return shown if len({p["sequence"] for p in shown}) == 2 else None

    try:
        shown = poll(both_parked, "status to show both versions parked", 90)
    except AssertionError:
        print(second.tail())
        raise
    assert all(p["key"] == {"pk": {"S": "bad"}} for p in shown), shown
    newer = {p["sequence"] for p in shown} - {parked["sequence"]}
    assert second.events("record parked", sequence=newer.pop())  # parked by the restarted one
    assert get(clients[EU], "Restarted", "bad") is None


def test_redrive_replays_captured_lambda_batches_from_s3(
    ddb_local: DynamoDBLocal, moto: MotoServer, tmp_path: Path
) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Captured", region=region)
    stamp = int(time.time() * 1000)
    item = {"pk": {"S": "lost"}, FIELDS.timestamp: {"N": str(stamp)}}
    clients[US].put_item(TableName="Captured", Item=item)
    arn = f"arn:aws:dynamodb:{US}:123456789012:table/Captured/stream/2024-01-01T00:00:00.000"
    record = record_to_lambda_event_record(
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "lost"}},
                "NewImage": item,
                "SequenceNumber": "100",
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        },
        event_source_arn=arn,
        aws_region=US,
    )
    invocation = {
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "DDBStreamBatchInfo": {"shardId": "s-1", "streamArn": arn, "batchSize": 1},
        "payload": json.dumps({"Records": [record]}),
    }
    config = write_config(
        tmp_path / "c.toml", ["Captured"], dict.fromkeys((US, EU), ddb_local.endpoint_url)
    )
    s3 = make_client("s3", RegionSpec(US, moto.endpoint_url))
    s3.create_bucket(Bucket="failures")
    s3.put_object(Bucket="failures", Key="aws/lambda/batch-1", Body=json.dumps(invocation))
    s3.put_object(Bucket="failures", Key="aws/lambda/meta-only", Body=json.dumps({}))
    store = (
        "--failure-store",
        "s3://failures/aws/lambda",
        "--s3-endpoint-url",
        moto.endpoint_url,
    )
    done = cli("redrive", "--config", str(config), *store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 1 of 1" in done.stdout and "metadata only" in done.stdout
    assert get(clients[EU], "Captured", "lost") is not None
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="failures").get("Contents", [])]
    assert keys == ["aws/lambda/meta-only"]  # the replayed batch is removed
    again = cli("redrive", "--config", str(config), *store)
    assert again.returncode == 0 and "replayed 0 of 0" in again.stdout
