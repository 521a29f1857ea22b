"""diff finds missing, extra and changed items; repair fixes them by the conflict rule."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.report_items import report_to_item
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.defaults import STATE_TABLE, TOMBSTONE_TTL_SECONDS
from dynamodb_replicator.core.model import RegionSpec, pad_sequence
from dynamodb_replicator.core.policy import LATEST
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.reports import ShardReport, TargetReport
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.resident_workload import EU_CENTRAL, EU_WEST, RULE_TOML
from tests.resident_workload import REGIONS as RESIDENT
from tests.runner_process import RunnerProcess, write_config
from tests.support import FIELDS, REGIONS, create_table
from tests.workload import BackgroundLoad, Workload, wait_until_converged

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


def config(tmp_path: Path, endpoint: str, tables: tuple[str, ...] = ("Cmp",)) -> str:
    return str(write_config(tmp_path / "cmp.toml", list(tables), dict.fromkeys(REGIONS, endpoint)))


def test_diff_then_repair_then_clean_diff(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, ddb_local.endpoint_url)
    # No runner replicates this table: the differing keys are settled by re-reading them.
    assert main(["diff", "--config", path, "--output", "json", "--settle-timeout", "1"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    eu, ap = report["regions"][EU], report["regions"][AP]
    assert report["items"] == {US: 302, EU: 301, AP: 304}
    assert (eu["missing"], eu["extra"], eu["different"]) == (1, 0, 1)
    assert (ap["missing"], ap["extra"], ap["different"]) == (0, 2, 0)
    assert eu["samples"]["missing"] == [{"pk": {"S": "missing"}}]  # a key object, not a string
    settle = report["settle"]
    assert report["verdict"] == "unsettled" and settle["method"] == "reread"
    assert (settle["in_flight"], settle["diverged"], settle["unsettled"]) == (0, 0, 4)
    assert settle["timed_out"] and "no runner checkpoints" in settle["reason"]

    assert main(["repair", "--config", path, "--dry-run", "--output", "json", "--force"]) == 0
    (dry,) = json.loads(capsys.readouterr().out)
    assert dry["repair"]["puts"] == {EU: 2, US: 2, AP: 1}  # missing+extra, extra+changed, changed
    assert dry["repair"]["deletes"] == {AP: 1}
    assert main(["diff", "--config", path, "--no-settle"]) == 1  # a dry run writes nothing
    assert "settled by" not in capsys.readouterr().out

    # Never replicated by a runner: no checkpoints, so repair refuses unless forced.
    assert main(["repair", "--config", path]) == 2
    why, what = capsys.readouterr().err.strip().splitlines()
    assert "repair refused for Cmp" in why and "never replicated" in why
    assert what.startswith("error: what to do:") and "--force" in what
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
    assert "table Nope is not in the config (tables: Cmp)" in capsys.readouterr().err
    create_table(clients[US], "Shape", region=US)
    create_table(clients[EU], "Shape", (("id", "N"),), region=EU)
    shaped = config(tmp_path, ddb_local.endpoint_url, ("Cmp", "Shape"))
    assert main(["repair", "--config", shaped, "--table", "Shape", "--regions", f"{US},{EU}"]) == 2
    assert "different key schemas" in capsys.readouterr().err


COLD = 20  # keys the load never touches


def cold_item(n: int, ts: str = "500", value: str = "cold") -> dict[str, Any]:
    return {"pk": {"S": f"cold-{n}"}, FIELDS.timestamp: {"N": ts}, "v": {"S": value}}


def test_a_change_behind_the_replicators_back_is_diverged_under_load_then_repaired(
    ddb_local: DynamoDBLocal,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    runners: list[RunnerProcess],
) -> None:
    endpoint = ddb_local.endpoint_url
    clients = {r: make_client("dynamodb", RegionSpec(r, endpoint)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Drift", region=region)
    for n in range(COLD):
        clients[US].put_item(TableName="Drift", Item=cold_item(n))
    path = str(
        write_config(
            tmp_path / "drift.toml",
            ["Drift"],
            dict.fromkeys(REGIONS, endpoint),
            lease_timeout_seconds=5,
        )
    )
    runners.append(RunnerProcess(Path(path), tmp_path / "runner.log").start())
    cold: dict[str, dict[str, Any] | None] = {f"cold-{n}": cold_item(n) for n in range(COLD)}
    wait_until_converged(clients, "Drift", cold)
    # 200 hot keys, ~100 writes/s across the regions, while one cold key is changed in
    # eu-west-1 behind the replicator's back: with the replicator's own marker and another
    # region as origin, the stream record looks like an echo and is not replicated.
    workload = Workload(clients, table="Drift", keys=200, seed=7)
    load = BackgroundLoad(workload, per_second=100, seconds=45).start()
    drifted = cold_item(3, ts="1000000000", value="drifted")
    behind = {**drifted, FIELDS.origin: {"S": US}, FIELDS.marker: {"N": "1000000000"}}
    clients[EU].put_item(TableName="Drift", Item=behind)
    try:
        code = main(["diff", "--config", path, "--json", "--settle-timeout", "90"])
        rate = load.rate()
    finally:
        load.stop()
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\ndiff under {rate:.0f} writes/s: {out[-600:]}")
    (report,) = json.loads(out)
    settle = report["settle"]
    assert code == 1 and report["verdict"] == "diverged", out
    assert settle["method"] == "checkpoints" and settle["unsettled"] == 0, out
    assert settle["diverged"] == 1 and settle["samples"]["diverged"] == [{"pk": {"S": "cold-3"}}]
    assert len(workload.events) > 100  # the diff ran under load

    assert main(["repair", "--config", path]) == 0  # a running runner: fresh reports
    capsys.readouterr()
    final: dict[str, dict[str, Any] | None] = {**workload.expected(), **cold, "cold-3": drifted}
    wait_until_converged(clients, "Drift", final)
    assert main(["diff", "--config", path]) == 0
    assert "identical in every region" in capsys.readouterr().out


def aged_state(clients: dict[str, Any], table: str, *, at: float) -> None:
    """State tables as a runner leaves them: a checkpoint and a shard report per region,
    the reports written at ``at``."""
    for region, client in clients.items():
        ensure_state_table(client, STATE_TABLE, region)
        state = DynamoStateStore(client, STATE_TABLE, region)
        ref = ShardRef(table, f"arn:aws:dynamodb:{region}:1:table/{table}/stream/s", "shard-1")
        state.seed(ref, dict.fromkeys(REGIONS, "100"))
        targets = tuple(TargetReport(t, advanced_at=at) for t in REGIONS if t != region)
        state.put(
            report_to_item(ShardReport(table, region, "s", "shard-1", "w1", at, False, targets))
        )


def test_repair_refuses_when_replication_is_older_than_the_tombstone_ttl(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for region, client in clients.items():
        create_table(client, "Aged", region=region)
    clients[US].put_item(TableName="Aged", Item=item("only-in-us", "5", "x"))
    path = config(tmp_path, ddb_local.endpoint_url, ("Aged",))
    repair = ["repair", "--config", path, "--table", "Aged"]
    hours = TOMBSTONE_TTL_SECONDS / 3600 + 1
    aged_state(clients, "Aged", at=time.time() - hours * 3600)
    assert main(repair) == 2
    why, what = capsys.readouterr().err.strip().splitlines()
    assert f"{US} -> {EU} last replicated {hours:.1f} h ago" in why, why
    assert "may hold data older than the tombstone TTL (48 h)" in why
    assert "add-region" in what and "--force" in what
    assert main([*repair, "--dry-run", "--force"]) == 0  # forced: the plan is made
    assert "would write: puts eu-west-1 1" in capsys.readouterr().out

    aged_state(clients, "Aged", at=time.time())  # the runner reported just now
    assert main(repair) == 0
    assert "repair wrote" in capsys.readouterr().out
    assert "Item" in clients[AP].get_item(TableName="Aged", Key={"pk": {"S": "only-in-us"}})


def test_repair_names_undecidable_keys_and_exits_1(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for region, client in clients.items():
        create_table(client, "Undecided", region=region)
    unversioned = {"pk": {"S": "no-version"}, "v": {"S": "written without __timestamp"}}
    clients[EU].put_item(TableName="Undecided", Item=unversioned)
    path = str(
        write_config(
            tmp_path / "u.toml", ["Undecided"], dict.fromkeys(REGIONS, ddb_local.endpoint_url)
        )
    )
    assert main(["repair", "--config", path, "--force"]) == 1
    out = capsys.readouterr().out
    assert "undecidable keys: 1" in out
    assert '{"pk": {"S": "no-version"}}' in out
    assert main(["repair", "--config", path, "--output", "json", "--force"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["repair"]["undecidable"] == [{"pk": {"S": "no-version"}}]


def test_the_same_content_under_two_versions_is_a_difference_repair_fixes(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """us-east-1 and eu-west-1 each hold their own write of the same content at the same
    timestamp (an idempotent write sent to both; the records lost), ap-southeast-1 a copy of
    us-east-1's. diff reports eu-west-1's as a version difference (exit 1); repair gives it
    the winner (2, us-east-1), and diff then finds the regions identical."""
    for region, client in clients.items():
        create_table(client, "Versions", region=region)
    clients[US].put_item(TableName="Versions", Item=item("twice", "2", "same"))
    clients[EU].put_item(TableName="Versions", Item=item("twice", "2", "same"))
    clients[AP].put_item(TableName="Versions", Item=item("twice", "2", "same", US))
    regions = dict.fromkeys(REGIONS, ddb_local.endpoint_url)
    path = str(write_config(tmp_path / "v.toml", ["Versions"], regions))
    assert main(["diff", "--config", path, "--no-settle", "--output", "json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    eu, ap = report["regions"][EU], report["regions"][AP]
    assert (eu["missing"], eu["extra"], eu["different"], eu["version"]) == (0, 0, 0, 1)
    assert eu["samples"]["version"] == [{"pk": {"S": "twice"}}]
    assert ap["version"] == 0 and report["verdict"] == "different"
    assert main(["diff", "--config", path, "--no-settle"]) == 1
    text = capsys.readouterr().out
    assert "1 same content under another version" in text
    assert 'version: {"pk": {"S": "twice"}}' in text
    assert main(["repair", "--config", path, "--force", "--output", "json"]) == 0
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["puts"] == {EU: 1}
    held = clients[EU].get_item(
        TableName="Versions", Key={"pk": {"S": "twice"}}, ConsistentRead=True
    )
    assert held["Item"][FIELDS.origin] == {"S": US}
    assert main(["diff", "--config", path, "--no-settle"]) == 0
    assert "identical in every region" in capsys.readouterr().out


def test_repair_exits_0_only_when_diff_then_finds_the_version_difference_gone(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """us-east-1 holds its own write at 2, eu-west-1 a copy of it; ap-southeast-1's
    application put the same content at 2 carrying the replica marker but no
    ``__originRegion``: a version difference there. After repair exits 0, diff finds
    every region identical."""
    for region, client in clients.items():
        create_table(client, "Marked", region=region)
    clients[US].put_item(TableName="Marked", Item=item("k", "2", "same"))
    clients[EU].put_item(TableName="Marked", Item=item("k", "2", "same", US))
    marked = {**item("k", "2", "same"), FIELDS.marker: {"N": "2"}}
    clients[AP].put_item(TableName="Marked", Item=marked)
    regions = dict.fromkeys(REGIONS, ddb_local.endpoint_url)
    path = str(write_config(tmp_path / "m.toml", ["Marked"], regions))
    assert main(["diff", "--config", path, "--no-settle", "--output", "json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["regions"][AP]["version"] == 1 and report["regions"][AP]["different"] == 0
    assert main(["repair", "--config", path, "--force", "--output", "json"]) == 0
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["puts"] == {AP: 1}
    assert main(["diff", "--config", path, "--no-settle"]) == 0, capsys.readouterr().out


def _updated_copy_under_a_delete(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    table: str,
    nonce: dict[str, str],
) -> str:
    """ap-southeast-1 holds a copy of (2, us-east-1) its application updated keeping the
    marker and ``nonce`` (its own content, as repair ranks it); eu-west-1 deleted
    (2, eu-west-1) and every other region remembers it. Repair's delete outranks
    ap-southeast-1's own content, but D2's conditions read the copy's labels
    (2, us-east-1), which outrank the delete. Diff exits 1; the config's path (``table``
    alone)."""
    for region, client in clients.items():
        create_table(client, table, region=region)
    disguised = {
        **item("k", "2", "updated", US),
        FIELDS.origin_seq: {"S": pad_sequence("5")},
        FIELDS.nonce: nonce,
    }
    clients[AP].put_item(TableName=table, Item=disguised)
    tomb = {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": "2"},
        FIELDS.origin: {"S": EU},
        FIELDS.marker: {"N": "2"},
        FIELDS.origin_seq: {"S": pad_sequence("7")},
        FIELDS.deleted_in: {"S": EU},
        FIELDS.expires_at: {"N": "9999999999"},
    }
    for region in (EU, US):
        clients[region].put_item(TableName=f"{table}.__tombstones", Item=tomb)
    regions = dict.fromkeys(REGIONS, ddb_local.endpoint_url)
    path = str(write_config(tmp_path / "r.toml", [table], regions))
    assert main(["diff", "--config", path, "--no-settle"]) == 1
    return path


def test_repair_lands_its_delete_over_a_copy_updated_keeping_its_marker(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The copy kept the replica write's nonce (sealed for other content): repair's
    delete supersedes it (relabelled as ap-southeast-1's own, then removed). Exit 0, and
    diff finds nothing left."""
    nonce = {"S": "n1/0000000000000000"}  # the seal of other content
    path = _updated_copy_under_a_delete(ddb_local, clients, tmp_path, "Superseded", nonce)
    capsys.readouterr()
    assert main(["repair", "--config", path, "--force", "--output", "json"]) == 0
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["deletes"] == {AP: 1} and repaired["repair"]["refused"] == 0
    assert main(["diff", "--config", path, "--no-settle"]) == 0


def test_repair_exits_1_naming_a_key_whose_needed_delete_the_conditions_refuse(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The copy's nonce is no string (written behind the replicator's back): no nonce to
    supersede, the delete is refused every time (a known limit). Repair must not exit 0:
    it names the key as refused and exits 1; diff still exits 1."""
    path = _updated_copy_under_a_delete(ddb_local, clients, tmp_path, "Refused", {"N": "7"})
    capsys.readouterr()
    assert main(["repair", "--config", path, "--force", "--output", "json"]) == 1
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["deletes"] == {AP: 1} and repaired["repair"]["stale"][AP] == 1
    assert repaired["repair"]["refused"] == 1
    assert repaired["repair"]["refused_keys"] == [{"pk": {"S": "k"}}]
    assert main(["repair", "--config", path, "--force"]) == 1
    text = capsys.readouterr().out
    assert "refused keys: 1" in text and '{"pk": {"S": "k"}}' in text
    assert main(["diff", "--config", path, "--no-settle"]) == 1
    capsys.readouterr()
    assert main(["repair", "--config", path, "--force", "--output", "json"]) == 1
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["deletes"] == {AP: 1} and repaired["repair"]["stale"][AP] == 1
    assert repaired["repair"]["refused"] == 1
    assert repaired["repair"]["refused_keys"] == [{"pk": {"S": "k"}}]
    assert main(["repair", "--config", path, "--force"]) == 1
    text = capsys.readouterr().out
    assert "refused keys: 1" in text and '{"pk": {"S": "k"}}' in text
    assert main(["diff", "--config", path, "--no-settle"]) == 1


def test_a_key_undecided_for_a_region_removed_from_the_config_says_what_decides_it(
    ddb_local: DynamoDBLocal,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a residency rule, eu-central-1 remembers (2, eu-central-1, ~) naming
    ap-southeast-1, a region since removed from the config (its write removed outside its
    scope, or ap-southeast-1's delete of it: either), and eu-west-1 holds a copy of (2,
    eu-central-1): a full repair leaves k undecidable. ``--regions`` rejects a region not
    in the config, so the message must not ask for it there: it says to re-add it, or to
    repair again once the tombstones naming it expire."""
    removed = AP
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in RESIDENT}
    for region, client in clients.items():
        create_table(client, "Removed", region=region)
    copy = {**item("k", "2", "v", EU_CENTRAL), FIELDS.origin_seq: {"S": pad_sequence("5")}}
    clients[EU_WEST].put_item(TableName="Removed", Item=copy)
    tomb = {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": "2"},
        FIELDS.origin: {"S": EU_CENTRAL},
        FIELDS.marker: {"N": "2"},
        FIELDS.origin_seq: {"S": LATEST},
        FIELDS.deleted_in: {"S": removed},
        FIELDS.expires_at: {"N": "9999999999"},
    }
    clients[EU_CENTRAL].put_item(TableName="Removed.__tombstones", Item=tomb)
    path = write_config(
        tmp_path / "removed.toml", ["Removed"], dict.fromkeys(RESIDENT, ddb_local.endpoint_url)
    )
    path.write_text(path.read_text() + RULE_TOML.format(table="Removed"))
    assert main(["repair", "--config", str(path), "--force", "--output", "json"]) == 1
    (repaired,) = json.loads(capsys.readouterr().out)
    assert repaired["repair"]["undecidable"] == [{"pk": {"S": "k"}}]
    assert repaired["repair"]["read_with"] == [removed]
    assert main(["repair", "--config", str(path), "--force"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert f"repair with {removed} in --regions" not in text
    assert f"{removed} not in the config (removed?): re-add it" in text
    assert "once the tombstones naming it expire" in text
    regions = f"{EU_CENTRAL},{removed}"
    assert main(["repair", "--config", str(path), "--force", "--regions", regions]) == 2
