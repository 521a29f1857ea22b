"""``run`` refuses bad configurations early, with a message that says how to fix them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.preflight import preflight
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.runner_process import write_config
from tests.support import REGIONS, create_table

US, EU, AP = REGIONS


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Good", region=region)
    create_table(clients[US], "OnlyInUs", region=US)
    create_table(clients[US], "KeysOnly", region=US, view="KEYS_ONLY")
    create_table(clients[EU], "KeysOnly", region=EU, view="KEYS_ONLY")
    create_table(clients[US], "Schema", region=US)
    create_table(clients[EU], "Schema", (("id", "N"),), region=EU)
    clients[US].create_table(
        TableName="NoStream",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_table(clients[EU], "NoStream", region=EU)
    # no stream in us-east-1, and another key there than in eu-west-1
    clients[US].create_table(
        TableName="Customers",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_table(clients[EU], "Customers", (("cid", "S"),), region=EU)
    yield clients


def run(tmp_path: Path, table: str, regions: dict[str, str]) -> int:
    config = write_config(tmp_path / "bad.toml", [table], regions)
    return main(["run", "--config", str(config), "--log-format", "text"])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("OnlyInUs", "table OnlyInUs does not exist in eu-west-1"),
        ("KeysOnly", "KEYS_ONLY stream; replication needs NEW_AND_OLD_IMAGES"),
        ("NoStream", "has no stream: enable one"),
        ("Schema", "different key schemas"),
    ],
)
def test_bad_tables_are_refused(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
    message: str,
) -> None:
    endpoints = {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    assert run(tmp_path, table, endpoints) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_endpoint_is_no_configuration_error(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], tmp_path: Path
) -> None:
    """An outage is reported (the runner starts and checks the region again later);
    the reachable regions are checked as usual."""
    closed = f"http://127.0.0.1:{free_port()}"
    config = load_config(
        write_config(tmp_path / "out.toml", ["Good"], {US: ddb_local.endpoint_url, AP: closed})
    )
    checked = preflight(config)
    assert list(checked.schemas) == [US]
    assert checked.unreachable[AP].startswith(f"cannot reach ap-southeast-1 ({closed})")
    bad = load_config(
        write_config(
            tmp_path / "bad.toml",
            ["OnlyInUs"],
            {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url, AP: closed},
        )
    )
    with pytest.raises(ConfigError, match="does not exist in eu-west-1"):
        preflight(bad)  # a configuration error stays fatal during an outage


def test_rejected_credentials_are_refused(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not_valid-key")  # DynamoDB Local rejects - and _
    assert run(tmp_path, "Good", {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}) == 2
    assert "credentials" in capsys.readouterr().err


def test_config_file_errors_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('tables = ["Good"]\n[[regions]]\nname = "a1"\n[[regions]]\nname = "a1"\n')
    assert main(["run", "--config", str(config)]) == 2
    assert "region a1 is listed twice" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    endpoints = {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url, AP: closed}
    config = write_config(tmp_path / "many.toml", ["OnlyInUs", "KeysOnly", "Schema"], endpoints)
    assert main(["run", "--config", str(config), "--log-format", "text"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    text = "\n".join(lines)
    for message in (
        "table OnlyInUs does not exist in eu-west-1",
        "KEYS_ONLY stream; replication needs NEW_AND_OLD_IMAGES",
        f"cannot reach ap-southeast-1 ({closed})",
        "table Schema has different key schemas: us-east-1: pk HASH S; eu-west-1: id HASH N",
    ):
        assert message in text, text
    assert "Traceback" not in text


def test_a_failing_preflight_names_every_problem_and_creates_nothing(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoints = {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    config = write_config(tmp_path / "c.toml", ["Customers"], endpoints, state_table="fresh-state")
    assert main(["run", "--config", str(config), "--log-format", "text"]) == 2
    err = capsys.readouterr().err
    # the fix runs as printed: it names the region
    assert "`aws dynamodb update-table --region us-east-1 --table-name Customers " in err
    assert "table Customers has different key schemas: us-east-1: id HASH S; " in err
    for region in (US, EU):
        assert "fresh-state" not in clients[region].list_tables()["TableNames"]
    assert "Customers.__tombstones" not in clients[US].list_tables()["TableNames"]


def test_every_unknown_key_is_named_with_a_close_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'tables = ["Good"]\nlease_timout_seconds = 5\n'
        '[[regions]]\nname = "us-east-1"\nendpoint = "http://x"\n'
        '[[regions]]\nname = "eu-west-1"\n'
    )
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: unknown key lease_timout_seconds (did you mean lease_timeout_seconds?)",
        "error: regions[0] (us-east-1): unknown key endpoint (did you mean endpoint_url?)",
    ]


def test_diff_of_a_table_not_in_the_config_names_the_configured_ones(
    ddb_local: DynamoDBLocal,
    clients: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoints = {US: ddb_local.endpoint_url, EU: ddb_local.endpoint_url}
    config = write_config(tmp_path / "c.toml", ["Good"], endpoints)
    assert main(["diff", "--config", str(config), "--table", "Goo"]) == 2
    assert capsys.readouterr().err == ("error: table Goo is not in the config (tables: Good)\n")
