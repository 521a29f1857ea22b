"""Data residency on DynamoDB Local, three regions: DE items in the two EU regions, US items
in the US region, every other item everywhere. Mixed writes, scope-changing updates and
deletes from every region (some made outside their scope), replicated by the runner
(behind the fault proxy, killed three times with SIGKILL) and by the Lambda handler fed
stream records; every region ends with
exactly what its rule allows, and ``diff --residency`` exits 0. An item left outside its
scope is found by ``diff --residency`` and removed by ``repair``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.defaults import STATE_TABLE
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.residency import Residency
from dynamodb_replicator.ops.settle_reads import settle_table
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_faults import KILLS, run_with_faults
from tests.resident_workload import (
    EU_CENTRAL,
    EU_WEST,
    REGIONS,
    RULE,
    RULE_TOML,
    US_EAST,
    ResidentWorkload,
    wait_until_scoped,
)
from tests.runner_process import write_config
from tests.support import FIELDS, StreamPump, create_table, scan


def tables(endpoint: str, table: str) -> dict[str, Any]:
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, table, region=region)
    return clients


def config_with_rule(path: Path, table: str, endpoint: str) -> Path:
    # The default lease: a restart with the same worker id resumes its leases at once, and
    # a short lease only starves pages of time to write on a busy machine.
    write_config(path, [table], dict.fromkeys(REGIONS, endpoint))
    path.write_text(path.read_text() + RULE_TOML.format(table=table))
    return path


def residency_check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["diff", "--residency", "--config", str(config), "--output", "json"])
    return code, json.loads(capsys.readouterr().out)


def held(client: Any, table: str) -> int:
    return len(scan(client, table))


def test_an_item_left_outside_its_scope_is_found_and_repaired(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = tables(ddb_local.endpoint_url, "Leftover")
    config = config_with_rule(tmp_path / "l.toml", "Leftover", ddb_local.endpoint_url)
    item = {"pk": {"S": "x"}, FIELDS.timestamp: {"N": "5"}, "country": {"S": "DE"}}
    for region in REGIONS:  # as a copy made before the rule existed: DE everywhere
        replica = {**item, FIELDS.origin: {"S": EU_WEST}, FIELDS.marker: {"N": "5"}}
        clients[region].put_item(TableName="Leftover", Item=replica)
    code, (report,) = residency_check(config, capsys)
    assert code == 1 and report["regions"][US_EAST]["outside"] == 1, report
    assert report["regions"][EU_WEST]["outside"] == 0
    assert main(["diff", "--config", str(config), "--no-settle"]) == 1
    assert "1 outside its scope" in capsys.readouterr().out
    assert main(["repair", "--config", str(config), "--force"]) == 0
    assert held(clients[US_EAST], "Leftover") == 0
    assert held(clients[EU_WEST], "Leftover") == 1
    code, (report,) = residency_check(config, capsys)
    assert code == 0, report


def test_the_lambda_handler_keeps_every_item_in_its_scope(
    ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = tables(ddb_local.endpoint_url, "ResidentFn")
    pump = StreamPump(ddb_local.endpoint_url, "ResidentFn", REGIONS)
    rule = Residency((("ResidentFn", RULE),)).to_env()

    def deliver_all() -> int:
        return sum(
            pump.deliver(r, pump.env(r) | {"REPLICATOR_RESIDENCY": rule}, monkeypatch)
            for r in REGIONS
        )

    workload = ResidentWorkload(clients, table="ResidentFn", keys=15, seed=27)
    for round_number in range(4):  # writes in every region, records delivered in between
        threads = [
            threading.Thread(target=workload.run_region, args=(r, 15, 1_000 + 60 * round_number))
            for r in REGIONS
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deliver_all()
    for _ in range(20):
        if deliver_all() == 0:
            break
    else:
        raise AssertionError("streams still busy")
    assert sum(e.delete for e in workload.events) > 5
    wait_until_scoped(clients, "ResidentFn", workload.expected(), timeout=5)


class _Observed(ResidentWorkload):
    """``ResidentWorkload`` that keeps the instance the fault run makes, for its events."""

    made: ClassVar[list[ResidentWorkload]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Observed.made.append(self)


def test_the_runner_keeps_every_item_in_its_scope_under_network_faults_and_kills(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _Observed.made.clear()
    summary = run_with_faults(
        ddb_local,
        tmp_path,
        "ResidentFaulty",
        regions=REGIONS,
        load_seconds=10,
        workload_type=_Observed,
        config_extra=RULE_TOML.format(table="ResidentFaulty"),
        converged=wait_until_scoped,
    )
    print(summary)
    faults = summary["faults"]
    assert isinstance(faults, dict) and sum(v for k, v in faults.items() if k != "none") >= 50
    assert summary["runners_that_took_leases"] == KILLS + 1, summary  # each kill hit a worker
    # The mix really happened (a loaded 2-core machine writes slowly: 60 writes were seen).
    assert isinstance(summary["operations"], int) and summary["operations"] >= 50, summary
    (workload,) = _Observed.made
    moved = [e for e in workload.events if e.content and e.content.get("country")]
    assert sum(e.delete for e in workload.events) > 0 and moved, summary
    config = config_with_rule(tmp_path / "check.toml", "ResidentFaulty", ddb_local.endpoint_url)
    code, (report,) = residency_check(config, capsys)
    assert code == 0 and report["clean"], report
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        assert report["regions"][region] == {
            "checked": held(client, "ResidentFaulty"),
            "outside": 0,
            "samples": [],
        }
    # Every scope is populated: DE items in the EU only, US items in the US only.
    eu, us = (scan(clients[r], "ResidentFaulty") for r in (EU_WEST, US_EAST))
    assert {i.get("country", {}).get("S") for i in eu} >= {"DE"}
    assert "DE" not in {i.get("country", {}).get("S") for i in us}
    assert "US" not in {i.get("country", {}).get("S") for i in eu}


def test_add_region_copies_only_the_items_of_its_scope(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, new = ddb_local.endpoint_url, "us-west-2"
    clients = tables(endpoint, "Grow")
    for n in range(30):  # each item where replication put it: DE in the EU, US in the US
        country = ("DE", "US", None)[n % 3]
        item = {"pk": {"S": f"k{n}"}, FIELDS.timestamp: {"N": "7"}}
        item |= {} if country is None else {"country": {"S": country}}
        for region in REGIONS:
            if RULE.allows(item, region):
                copy = item if region == EU_WEST else item | {FIELDS.origin: {"S": EU_WEST}}
                copy = copy | ({} if region == EU_WEST else {FIELDS.marker: {"N": "7"}})
                clients[region].put_item(TableName="Grow", Item=copy)
    config = config_with_rule(tmp_path / "g.toml", "Grow", endpoint)
    add = ["add-region", "--config", str(config), "--region", new, "--endpoint-url", endpoint]
    assert main([*add, "--from", EU_WEST, "--segments", "2"]) == 0, capsys.readouterr()
    assert "10 items outside the new region's residency scope" in capsys.readouterr().out
    target = make_client("dynamodb", RegionSpec(new, endpoint))
    held_there = scan(target, "Grow")
    assert len(held_there) == 10 and all("country" not in i for i in held_there)
    # The DE items are remembered as deleted there: late versions of them cannot land.
    assert len(scan(target, "Grow.__tombstones")) == 10
    code, (report,) = residency_check(config, capsys)
    assert code == 0 and report["regions"][new]["checked"] == 10, report


def test_add_region_merges_a_joining_table_out_only_to_each_item_s_scope(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A joining table that holds items of its own (the merge path): each goes out only to
    the regions of its scope, and the joining region keeps only what its scope allows."""
    endpoint, new = ddb_local.endpoint_url, "us-west-2"
    clients = tables(endpoint, "Join")
    joining = make_client("dynamodb", RegionSpec(new, endpoint))
    create_table(joining, "Join", region=new)
    for country in ("DE", "US", "FR"):  # the joining region's own writes, newer than none
        item = {"pk": {"S": country}, FIELDS.timestamp: {"N": "9"}, "country": {"S": country}}
        joining.put_item(TableName="Join", Item=item)
    config = config_with_rule(tmp_path / "j.toml", "Join", endpoint)
    add = ["add-region", "--config", str(config), "--region", new, "--endpoint-url", endpoint]
    assert main([*add, "--from", EU_WEST, "--segments", "2"]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "merge" in out and "not copied out to regions outside their residency scope" in out
    keys = {region: sorted(i["pk"]["S"] for i in scan(c, "Join")) for region, c in clients.items()}
    assert keys == {"eu-central-1": ["DE", "FR"], EU_WEST: ["DE", "FR"], US_EAST: ["FR", "US"]}
    assert sorted(i["pk"]["S"] for i in scan(joining, "Join")) == ["FR"]
    code, (report,) = residency_check(config, capsys)
    assert code == 0, report


def test_the_settle_wait_counts_keys_held_exactly_in_their_scope_as_agreeing(
    ddb_local: DynamoDBLocal,
) -> None:
    """A DE item held alike in both EU regions and a US item held in us-east-1 only (the
    reference eu-central-1 is outside its scope): the settle wait, re-reading them on
    DynamoDB Local, finds them agreeing at once, not differing until the wait ends."""
    clients = tables(ddb_local.endpoint_url, "ResidentSettle")
    stamp = {"N": "5"}
    de = {"pk": {"S": "de"}, FIELDS.timestamp: stamp, "country": {"S": "DE"}}
    clients[EU_WEST].put_item(TableName="ResidentSettle", Item=de)
    copy = {**de, FIELDS.origin: {"S": EU_WEST}, FIELDS.marker: stamp}
    clients[EU_CENTRAL].put_item(TableName="ResidentSettle", Item=copy)
    us = {"pk": {"S": "us"}, FIELDS.timestamp: stamp, "country": {"S": "US"}}
    clients[US_EAST].put_item(TableName="ResidentSettle", Item=us)
    report = settle_table(
        "ResidentSettle",
        ['{"pk": {"S": "de"}}', '{"pk": {"S": "us"}}'],
        regions=[RegionSpec(r, ddb_local.endpoint_url) for r in REGIONS],
        sources=[RegionSpec(r, ddb_local.endpoint_url) for r in REGIONS],
        key_names=["pk"],
        fields=FIELDS,
        state_table=STATE_TABLE,
        timeout=5,
        rule=RULE,
    )
    assert report.in_flight == 2 and report.clean, report
    assert report.seconds < 5  # decided at the first read, not at the bound
