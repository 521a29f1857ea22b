"""Safety rails on DynamoDB Local: a worker id runs once, add-region does not re-copy a
configured region by accident nor reach AWS for a local setup, tombstone tables for Lambda."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import REGIONS, create_table

US, EU, AP = REGIONS


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Rails", region=region)
    yield clients


def config_file(tmp_path: Path, endpoint: str, regions: tuple[str, ...] = (US, EU)) -> Path:
    # Leases of 10 s: a busy machine's coordination round still renews a claim in time.
    return write_config(
        tmp_path / "rails.toml",
        ["Rails"],
        dict.fromkeys(regions, endpoint),
        lease_timeout_seconds=10,
        state_table="rails-state",
    )


def test_a_worker_id_runs_in_one_process_only(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], tmp_path: Path
) -> None:
    config = load_config(config_file(tmp_path, ddb_local.endpoint_url))
    first = Runner(config, worker_id="dup")
    first.start()
    stop = threading.Event()
    thread = threading.Thread(target=first.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with pytest.raises(WorkerIdInUseError, match="worker id 'dup' is in use by another"):
            Runner(config, worker_id="dup").start()
        other = Runner(config, worker_id="other")
        other.start()  # another id is welcome
        other.shutdown()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    # Stopped cleanly, the first process gave the id back in every region (its claim is
    # released, expiry 0, not left to expire), so the next start has nothing to wait for.
    for region in (US, EU):
        claim = clients[region].get_item(TableName="rails-state", Key={"pk": {"S": "worker|dup"}})
        assert claim["Item"]["expires"] == {"N": "0"}, f"{region} still holds: {claim['Item']}"
        assert claim["Item"]["instance"] == {"S": first.instance}
    again = Runner(config, worker_id="dup")
    again.start()
    for region in (US, EU):
        claim = clients[region].get_item(TableName="rails-state", Key={"pk": {"S": "worker|dup"}})
        assert claim["Item"]["instance"] == {"S": again.instance}
    again.shutdown()


def test_a_dead_process_s_worker_id_is_taken_over(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], tmp_path: Path
) -> None:
    config = load_config(config_file(tmp_path, ddb_local.endpoint_url))
    warm = Runner(config, worker_id="warm")
    warm.start()  # creates the state tables
    warm.shutdown()
    expires = int(time.time() * 1000) + 2_000  # a claim nobody renews: a killed process
    for region in (US, EU):
        clients[region].put_item(
            TableName="rails-state",
            Item={
                "pk": {"S": "worker|crashed"},
                "expires": {"N": str(expires)},
                "instance": {"S": "killed-9"},
            },
        )
    runner = Runner(config, worker_id="crashed")
    runner.start()  # waits for the claim to expire, then takes it
    assert time.time() * 1000 >= expires
    for region in (US, EU):
        item = clients[region].get_item(
            TableName="rails-state", Key={"pk": {"S": "worker|crashed"}}
        )["Item"]
        assert item["instance"] == {"S": runner.instance}
    runner.shutdown()


def test_the_cli_refuses_a_duplicate_worker_id(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_file(tmp_path, ddb_local.endpoint_url)
    first = Runner(load_config(path), worker_id="cli-dup")
    first.start()
    stop = threading.Event()
    thread = threading.Thread(target=first.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert main(["run", "--config", str(path), "--worker-id", "cli-dup"]) == 2
    finally:
        stop.set()
        thread.join(timeout=30)
    err = capsys.readouterr().err
    assert "error: worker id 'cli-dup' is in use by another running process" in err
    assert "Traceback" not in err


def test_add_region_of_a_configured_region_needs_resume(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(config_file(tmp_path, ddb_local.endpoint_url, REGIONS))
    assert main(["add-region", "--config", path, "--region", AP]) == 2
    err = capsys.readouterr().err
    assert f"error: {AP} is configured already" in err and "--resume" in err
    assert main(["add-region", "--config", path, "--region", "sa-east-1", "--resume"]) == 2
    assert "--resume: sa-east-1 is not in" in capsys.readouterr().err


def test_add_region_to_a_local_setup_without_endpoint_gets_a_hint(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(config_file(tmp_path, ddb_local.endpoint_url))
    assert main(["add-region", "--config", path, "--region", AP]) == 2
    err = capsys.readouterr().err
    assert "no --endpoint-url for ap-southeast-1" in err
    assert f"--endpoint-url {ddb_local.endpoint_url}" in err
    assert len(err.splitlines()) == 1


def test_create_tombstone_tables(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for region, (key, kind) in ((US, ("pk", "S")), (EU, ("id", "N"))):
        clients[region].create_table(  # no tombstone table yet (as create_table makes)
            TableName="Lambda",
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": kind}],
            BillingMode="PAY_PER_REQUEST",
        )
    endpoint = ddb_local.endpoint_url
    command = ["create-tombstone-tables", "--tables", "Lambda", "--regions", f"{US},{EU}"]
    assert main([*command, "--endpoint-url", endpoint]) == 0
    out = capsys.readouterr().out
    assert f"{US}: Lambda.__tombstones created (TTL on)" in out
    for region, key in ((US, "pk"), (EU, "id")):
        table = clients[region].describe_table(TableName="Lambda.__tombstones")["Table"]
        assert [k["AttributeName"] for k in table["KeySchema"]] == [key]
        ttl = clients[region].describe_time_to_live(TableName="Lambda.__tombstones")
        assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert main([*command, "--endpoint-url", endpoint, "--output", "json"]) == 0
    assert {row["action"] for row in json.loads(capsys.readouterr().out)} == {"found"}
    assert main([*command[:-2], "--regions", AP, "--endpoint-url", endpoint]) == 2
    assert "table Lambda does not exist in ap-southeast-1" in capsys.readouterr().err
