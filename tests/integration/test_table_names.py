"""Per-region table names on DynamoDB Local: a table called otherwise in each region (as
CloudFormation names them), replicated by the runner and by the Lambda handler, compared by
``diff``, fixed by ``repair``, reported by ``status``; the logical name stays the identity
in the state table, the metrics and the reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec, TableNames
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_subscribe import clients as subscribe_clients
from tests.integration.test_subscribe import deploy_function, table
from tests.integration.test_subscribe import mappings as subscribed
from tests.moto_server import MotoServer
from tests.runner_process import RunnerProcess, write_config
from tests.support import FIELDS, StreamPump, create_table
from tests.workload import region_state

US, EU = "us-east-1", "eu-west-1"
ORDERS = {US: "UsStack-Orders-9Z8Y7X", EU: "EuStack-Orders-1A2B3C"}
ITEMS = {US: "UsStack-Items-7F6E5D", EU: "EuStack-Items-4C3B2A"}
T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Call ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def item(key: str, ts: int, value: str) -> dict[str, Any]:
    return {"pk": {"S": key}, FIELDS.timestamp: {"N": str(ts)}, "v": {"S": value}}


def clients_with(endpoint: str, physical: dict[str, str]) -> dict[str, Any]:
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in physical}
    for region, client in clients.items():
        create_table(client, physical[region], region=region)  # and NAME.__tombstones
    return clients


def converged(
    clients: dict[str, Any], physical: dict[str, str], expected: dict[str, dict[str, Any]]
) -> Callable[[], bool | None]:
    """True once every region's table holds exactly ``expected`` (system attributes aside)."""

    def check() -> bool | None:
        same = all(region_state(c, physical[r]) == expected for r, c in clients.items())
        return True if same else None

    return check


def config_file(tmp_path: Path, endpoint: str) -> Path:
    path = write_config(
        tmp_path / "names.toml", ["Orders"], {US: endpoint, EU: endpoint}, lease_timeout_seconds=5
    )
    mapping = "".join(f'{region} = "{name}"\n' for region, name in ORDERS.items())
    path.write_text(path.read_text() + "\n[table_names.Orders]\n" + mapping)
    return path


def test_the_runner_diff_repair_and_status_use_each_regions_name(
    ddb_local: DynamoDBLocal,
    runners: list[RunnerProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients = clients_with(ddb_local.endpoint_url, ORDERS)
    path = config_file(tmp_path, ddb_local.endpoint_url)
    log = tmp_path / "runner.log"
    runners.append(RunnerProcess(path, log).start())
    us, eu = clients[US], clients[EU]
    now = int(time.time() * 1000)
    try:
        # Inserts both ways.
        us.put_item(TableName=ORDERS[US], Item=item("from-us", now, "a"))
        us.put_item(TableName=ORDERS[US], Item=item("gone-in-eu", now, "b"))
        eu.put_item(TableName=ORDERS[EU], Item=item("from-eu", now, "c"))
        eu.put_item(TableName=ORDERS[EU], Item=item("gone-in-us", now, "d"))
        inserted = {
            "from-us": item("from-us", now, "a"),
            "gone-in-eu": item("gone-in-eu", now, "b"),
            "from-eu": item("from-eu", now, "c"),
            "gone-in-us": item("gone-in-us", now, "d"),
        }
        poll(converged(clients, ORDERS, inserted), "the inserts to reach both regions")
        # Updates and deletes both ways, each of an item written in the other region.
        eu.put_item(TableName=ORDERS[EU], Item=item("from-us", now + 1, "a2"))
        us.put_item(TableName=ORDERS[US], Item=item("from-eu", now + 1, "c2"))
        eu.delete_item(TableName=ORDERS[EU], Key={"pk": {"S": "gone-in-eu"}})
        us.delete_item(TableName=ORDERS[US], Key={"pk": {"S": "gone-in-us"}})
        final = {
            "from-us": item("from-us", now + 1, "a2"),
            "from-eu": item("from-eu", now + 1, "c2"),
        }
        poll(converged(clients, ORDERS, final), "the updates and deletes to reach both regions")
    except AssertionError:
        print(log.read_text()[-4000:])
        raise
    # The deletes are remembered in each region's tombstone table: its name + the suffix.
    tombstones = {r: region_state(c, f"{ORDERS[r]}.__tombstones") for r, c in clients.items()}
    assert set(tombstones[US]) == set(tombstones[EU]) == {"gone-in-eu", "gone-in-us"}
    # The logical name stays the identity of the leases and checkpoints.
    leases = [i["pk"]["S"] for i in us.scan(TableName="dynamodb-replicator-state")["Items"]]
    assert any(pk.startswith("lease|Orders|") for pk in leases), leases

    args = ["--config", str(path), "--output", "json"]
    assert main(["diff", *args]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["table"] == "Orders" and report["verdict"] == "identical"
    assert report["items"] == {US: 2, EU: 2}

    # A change behind the replicator's back (it looks like a replica write: an echo).
    hidden = {**item("hidden", now, "h"), FIELDS.origin: {"S": US}, FIELDS.marker: {"N": str(now)}}
    eu.put_item(TableName=ORDERS[EU], Item=hidden)
    assert main(["diff", *args, "--no-settle"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["regions"][EU]["extra"] == 1
    assert report["regions"][EU]["samples"]["extra"] == [{"pk": {"S": "hidden"}}]

    assert main(["repair", *args]) == 0  # the runner's reports say every pair is fresh
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["puts"] == {US: 1}
    assert us.get_item(TableName=ORDERS[US], Key={"pk": {"S": "hidden"}})["Item"]["v"] == {"S": "h"}
    assert main(["diff", *args]) == 0
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "identical"

    def healthy() -> dict[str, Any] | None:
        code = main(["status", *args])
        report = json.loads(capsys.readouterr().out)
        pairs = {(p["table"], p["source"], p["target"]): p for p in report["pairs"]}
        done = set(pairs) == {("Orders", US, EU), ("Orders", EU, US)} and all(
            p["applied"] >= 4 and p["backlog"] == 0 for p in pairs.values()
        )
        return report if code == 0 and done else None

    report = poll(healthy, "status to show both pairs of Orders caught up")
    assert not report["stuck"]


def test_the_lambda_handler_writes_each_regions_table_and_reports_the_logical_name(
    ddb_local: DynamoDBLocal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clients = clients_with(ddb_local.endpoint_url, ITEMS)
    us, eu = clients[US], clients[EU]
    names = TableNames.of({"Items": ITEMS})
    pump = StreamPump(ddb_local.endpoint_url, "Items", (US, EU), names=names)
    us.put_item(TableName=ITEMS[US], Item=item("one", 100, "us"))
    eu.put_item(TableName=ITEMS[EU], Item=item("two", 100, "eu"))
    eu.put_item(TableName=ITEMS[EU], Item=item("gone", 100, "eu"))
    pump.run_until_quiet(monkeypatch)
    eu.put_item(TableName=ITEMS[EU], Item=item("one", 200, "eu-update"))
    us.delete_item(TableName=ITEMS[US], Key={"pk": {"S": "gone"}})
    pump.run_until_quiet(monkeypatch)

    expected = {"one": item("one", 200, "eu-update"), "two": item("two", 100, "eu")}
    assert converged(clients, ITEMS, expected)()
    assert set(region_state(eu, f"{ITEMS[EU]}.__tombstones")) == {"gone"}
    # The metrics name the logical table, whichever region's name the stream carried.
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert emf and {line["Table"] for line in emf} == {"Items"}
    assert {line["SourceRegion"] for line in emf} == {US, EU}


BOOKS = {US: "UsStack-Books-1Q2W3E", EU: "EuStack-Books-4R5T6Y"}


def books_config(tmp_path: Path, endpoint: str) -> Path:
    path = write_config(tmp_path / "books.toml", ["Books"], {US: endpoint, EU: endpoint})
    mapping = "".join(f'{region} = "{name}"\n' for region, name in BOOKS.items())
    path.write_text(path.read_text() + "\n[table_names.Books]\n" + mapping)
    return path


def test_tombstone_tables_versioning_and_add_region_use_each_regions_name(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in (US, EU)}
    for region, client in clients.items():  # an existing system: no tombstone tables yet
        client.create_table(
            TableName=BOOKS[region],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for n in range(5):  # items written before replication: no __timestamp
            client.put_item(TableName=BOOKS[region], Item={"pk": {"S": f"b{n}"}})
    path = books_config(tmp_path, endpoint)

    assert main(["create-tombstone-tables", "--config", str(path), "--output", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["region"], r["table"], r["tombstone_table"], r["action"]) for r in rows} == {
        (region, "Books", f"{BOOKS[region]}.__tombstones", "created") for region in (US, EU)
    }

    for region in (US, EU):
        versioned = ["version-items", "--config", str(path), "--region", region]
        assert main([*versioned, "--timestamp", "1000", "--output", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["tables"]["Books"]["versioned"] == 5  # reported by the logical name
        stamps = {
            i[FIELDS.timestamp]["N"] for i in region_state(clients[region], BOOKS[region]).values()
        }
        assert stamps == {"1000"}

    # Versioned in each region, each item is that region's own write of (1000, region): two
    # versions of one content, which the conditions order (a delete of eu-west-1's would
    # leave us-east-1's), so diff reports them until repair gives both the winner's.
    assert main(["diff", "--config", str(path), "--output", "json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["regions"][EU]["version"] == 5 and report["regions"][EU]["different"] == 0
    assert main(["repair", "--config", str(path), "--force", "--output", "json"]) == 0
    capsys.readouterr()
    assert main(["diff", "--config", str(path), "--output", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "identical"

    # A new region gets the table under its logical name (the config cannot name a region
    # it does not list yet), copied from the source's table of another name.
    new = "ap-southeast-1"
    added = ["add-region", "--config", str(path), "--region", new, "--endpoint-url", endpoint]
    assert main([*added, "--from", EU, "--settle-timeout", "5"]) == 0
    assert f"Books: created in {new}" in capsys.readouterr().out
    there = make_client("dynamodb", RegionSpec(new, endpoint))
    assert set(region_state(there, "Books")) == {f"b{n}" for n in range(5)}
    assert main(["diff", "--config", str(path), "--output", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "identical" and report["items"] == {US: 5, EU: 5, new: 5}

    # A region whose table exists already under another name: listed in the config with
    # its name first, then copied into by `add-region --resume`.
    later, named = "sa-east-1", "SaStack-Books-7U8I9O"
    create_table(make_client("dynamodb", RegionSpec(later, endpoint)), named, region=later)
    text = path.read_text().replace(
        "[table_names.Books]\n", f'[table_names.Books]\n{later} = "{named}"\n'
    )
    path.write_text(text + f'\n[[regions]]\nname = "{later}"\nendpoint_url = "{endpoint}"\n')
    resumed = ["add-region", "--config", str(path), "--region", later, "--resume"]
    assert main([*resumed, "--from", US, "--settle-timeout", "5"]) == 0
    assert f"Books (as {named}): found (same schema) in {later}" in capsys.readouterr().out
    copied = region_state(make_client("dynamodb", RegionSpec(later, endpoint)), named)
    assert set(copied) == {f"b{n}" for n in range(5)}


def test_subscribe_maps_the_configs_tables_by_their_names_in_the_region(
    moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddb, lambdas = subscribe_clients(moto)
    deploy_function(moto)
    table(ddb, BOOKS[US])
    table(ddb, "Books")  # the logical name exists too, but is not Books in us-east-1
    path = books_config(tmp_path, moto.endpoint_url)
    subscribe = ["subscribe", "--config", str(path), "--region", US]
    assert main([*subscribe, "--endpoint-url", moto.endpoint_url]) == 0
    captured = capsys.readouterr()
    assert f"{BOOKS[US]}: did create" in captured.out
    # The function was not deployed from the config: it would not know the names.
    assert f"REPLICATOR_TABLE_NAMES='', the config gives 'Books:{EU}=" in captured.err
    (mapping,) = subscribed(lambdas)
    stream = ddb.describe_table(TableName=BOOKS[US])["Table"]["LatestStreamArn"]
    assert mapping["EventSourceArn"] == stream
