"""diff finds missing, extra and changed items; repair fixes them by the conflict rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import FIELDS, REGIONS, create_table

US, EU, AP = REGIONS


def item(key: str, ts: str, value: str, origin: str | None = None) -> dict[str, Any]:
    found = {"pk": {"S": key}, FIELDS.timestamp: {"N": ts}, "v": {"S": value}}
    if origin:  # as the replicator writes a replica
        found[FIELDS.origin] = {"S": origin}
        found[FIELDS.marker] = {"N": ts}
    return found


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Cmp", region=region)
        for n in range(300):  # agreeing items, written as a replicated table would hold them
            origin = None if region == US else US
            client.put_item(TableName="Cmp", Item=item(f"same-{n}", "1", "x", origin))
    for region in (US, AP):  # missing in eu-west-1
        clients[region].put_item(
            TableName="Cmp", Item=item("missing", "5", "m", None if region == US else US)
        )
    clients[AP].put_item(TableName="Cmp", Item=item("extra", "5", "e"))  # only in ap
    for region in (US, EU, AP):  # eu-west-1 holds a newer, unreplicated write
        clients[region].put_item(
            TableName="Cmp", Item=item("changed", "10", "old", None if region == US else US)
        )
    clients[EU].put_item(TableName="Cmp", Item=item("changed", "11", "newer-in-eu"))
    for region in (US, AP):  # ap holds a version a remembered delete beats
        clients[region].put_item(
            TableName="Cmp", Item=item("deleted", "3", "d", None if region == US else US)
        )
    clients[AP].put_item(TableName="Cmp", Item=item("deleted", "3", "d", US))
    tomb = {
        "pk": {"S": "deleted"},
        FIELDS.timestamp: {"N": "3"},
        FIELDS.origin: {"S": US},
        FIELDS.marker: {"N": "3"},
        FIELDS.deleted_in: {"S": EU},
        FIELDS.expires_at: {"N": "9999999999"},
    }
    clients[EU].put_item(TableName="Cmp.__tombstones", Item=tomb)
    clients[US].delete_item(TableName="Cmp", Key={"pk": {"S": "deleted"}})
    clients[US].put_item(TableName="Cmp.__tombstones", Item=tomb)
    yield clients


def config(tmp_path: Path, endpoint: str) -> str:
    return str(write_config(tmp_path / "cmp.toml", ["Cmp"], dict.fromkeys(REGIONS, endpoint)))


def test_diff_then_repair_then_clean_diff(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, ddb_local.endpoint_url)
    # No runner replicates this table: the differing keys are settled by re-reading them.
    assert main(["diff", "--config", path, "--json", "--settle-timeout", "1"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    eu, ap = report["regions"][EU], report["regions"][AP]
    assert report["items"] == {US: 302, EU: 301, AP: 304}
    assert (eu["missing"], eu["extra"], eu["different"]) == (1, 0, 1)
    assert (ap["missing"], ap["extra"], ap["different"]) == (0, 2, 0)
    assert any("missing" in key for key in eu["samples"]["missing"])
    settle = report["settle"]
    assert report["verdict"] == "unsettled" and settle["method"] == "reread"
    assert (settle["in_flight"], settle["diverged"], settle["unsettled"]) == (0, 0, 4)
    assert settle["timed_out"] and "no runner checkpoints" in settle["reason"]

    assert main(["repair", "--config", path, "--dry-run", "--json", "--force"]) == 0
    (dry,) = json.loads(capsys.readouterr().out)
    assert dry["repair"]["puts"] == {EU: 2, US: 2, AP: 1}  # missing+extra, extra+changed, changed
    assert dry["repair"]["deletes"] == {AP: 1}
    assert main(["diff", "--config", path, "--no-settle"]) == 1  # a dry run writes nothing
    assert "settled by" not in capsys.readouterr().out

    # Never replicated by a runner: no checkpoints, so repair refuses unless forced.
    assert main(["repair", "--config", path]) == 2
    why, what = capsys.readouterr().err.strip().splitlines()
    assert "repair refused for Cmp" in why and "never replicated" in why
    assert what.startswith("what to do:") and "--force" in what
    assert main(["repair", "--config", path, "--force"]) == 0
    assert "repair wrote" in capsys.readouterr().out
    assert main(["diff", "--config", path]) == 0
    assert "identical in every region" in capsys.readouterr().out
    for region, client in clients.items():
        changed = client.get_item(TableName="Cmp", Key={"pk": {"S": "changed"}})["Item"]
        assert changed["v"] == {"S": "newer-in-eu"}, region
        assert "Item" not in client.get_item(TableName="Cmp", Key={"pk": {"S": "deleted"}}), region
        assert client.get_item(TableName="Cmp", Key={"pk": {"S": "extra"}})["Item"]["v"] == {
            "S": "e"
        }


def test_bad_input_is_a_clear_error(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, ddb_local.endpoint_url)
    assert main(["diff", "--config", path, "--regions", f"{US},mars-north-1"]) == 2
    assert "unknown region" in capsys.readouterr().err
    assert main(["diff", "--config", path, "--table", "Nope"]) == 2
    assert "table Nope does not exist in us-east-1" in capsys.readouterr().err
    create_table(clients[US], "Shape", region=US)
    create_table(clients[EU], "Shape", (("id", "N"),), region=EU)
    assert main(["repair", "--config", path, "--table", "Shape", "--regions", f"{US},{EU}"]) == 2
    assert "different key schemas" in capsys.readouterr().err
