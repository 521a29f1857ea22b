"""``subscribe`` against moto's server: creates, is idempotent, updates, dry-runs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.mapping import MappingSettings
from tests.moto_server import MotoServer

FUNCTION = "dynamodb-replicator-us-east-1"  # the template's name: subscribe's default


def clients(moto: MotoServer) -> tuple[Any, Any]:
    spec = RegionSpec("us-east-1", moto.endpoint_url)
    return make_client("dynamodb", spec), make_client("lambda", spec)


def deploy_function(moto: MotoServer) -> None:
    spec = RegionSpec("us-east-1", moto.endpoint_url)
    policy = {"Version": "2012-10-17", "Statement": []}
    role = make_client("iam", spec).create_role(
        RoleName="replicator", AssumeRolePolicyDocument=json.dumps(policy)
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    make_client("lambda", spec).create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )


def table(ddb: Any, name: str, view: str | None = "NEW_AND_OLD_IMAGES") -> None:
    extra = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": view}} if view else {}
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def function_and_table(moto: MotoServer) -> Any:
    """The deployed function and one table, dev_Orders; the Lambda client."""
    ddb, lambdas = clients(moto)
    deploy_function(moto)
    table(ddb, "dev_Orders")
    return lambdas


def mappings(lambdas: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = lambdas.list_event_source_mappings(FunctionName=FUNCTION)[
        "EventSourceMappings"
    ]
    return found


def run(moto: MotoServer, *extra: str) -> int:
    return main(["subscribe", "--env", "dev", "--endpoint-url", moto.endpoint_url, *extra])


def test_create_then_noop_then_update(moto: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    ddb, lambdas = clients(moto)
    deploy_function(moto)
    table(ddb, "dev_Orders")
    table(ddb, "dev_Users", view=None)  # no stream yet: subscribe enables one
    table(ddb, "dev_Orders.__tombstones", view=None)  # the replicator's own: left alone
    table(ddb, "prod_Orders")  # another environment: left alone

    assert run(moto, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "dev_Orders: would create" in plan and "dev_Users: would enable-stream" in plan
    assert "tombstones" not in plan and "prod_" not in plan
    assert mappings(lambdas) == []  # a dry run changes nothing
    assert "StreamSpecification" not in ddb.describe_table(TableName="dev_Users")["Table"]

    assert run(moto) == 0
    created = mappings(lambdas)
    assert len(created) == 2
    assert all(m["StartingPosition"] == "TRIM_HORIZON" for m in created)
    assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in created)
    users = ddb.describe_table(TableName="dev_Users")["Table"]
    assert users["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    capsys.readouterr()

    assert run(moto) == 0  # a second run changes nothing
    assert capsys.readouterr().out.count(": already subscribed (mapping ") == 2
    assert len(mappings(lambdas)) == 2

    assert run(moto, "--batch-size", "50") == 0  # a changed setting is updated in place
    assert "did update" in capsys.readouterr().out
    assert sorted(m["BatchSize"] for m in mappings(lambdas)) == [50, 50]
    assert len(mappings(lambdas)) == 2


def test_a_config_gives_the_endpoint_and_a_rerun_says_nothing_changed(
    moto: MotoServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ddb, lambdas = clients(moto)
    deploy_function(moto)
    table(ddb, "Orders")
    config = tmp_path / "c.toml"
    config.write_text(
        'tables = ["Orders"]\n'
        + "".join(
            f'[[regions]]\nname = "{name}"\nendpoint_url = "{moto.endpoint_url}"\n'
            for name in ("us-east-1", "eu-west-1")
        )
    )
    command = ["subscribe", "--config", str(config), "--region", "us-east-1"]  # no --endpoint-url
    assert main(command) == 0
    first = capsys.readouterr()
    assert "Orders: did create" in first.out and len(mappings(lambdas)) == 1
    # the function was not deployed from the config: it does not know the regions
    assert "REPLICATOR_REGIONS='', the config gives 'us-east-1,eu-west-1'" in first.err
    assert main(command) == 0
    (line,) = capsys.readouterr().out.splitlines()
    uuid = mappings(lambdas)[0]["UUID"]
    assert line == f"Orders: already subscribed (mapping {uuid}): nothing to change"


def test_clear_errors(moto: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    ddb, _ = clients(moto)
    table(ddb, "dev_Keys", view="KEYS_ONLY")
    assert run(moto) == 2
    assert f"function {FUNCTION} does not exist" in capsys.readouterr().err
    deploy_function(moto)
    assert run(moto) == 2
    assert "KEYS_ONLY: the view type of an existing stream cannot change" in capsys.readouterr().out
    nope = ["subscribe", "--env", "nope", "--endpoint-url", moto.endpoint_url]
    assert main([*nope, "--function", FUNCTION]) == 2
    assert "no table in us-east-1 is named nope_*" in capsys.readouterr().err


def test_a_disabled_mapping_is_reported_and_enabled(
    moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    lambdas = function_and_table(moto)
    assert run(moto) == 0
    (mapping,) = mappings(lambdas)
    lambdas.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    assert mappings(lambdas)[0]["State"] == "Disabled"
    capsys.readouterr()

    assert run(moto, "--dry-run") == 0
    assert f"dev_Orders: would enable {mapping['UUID']} (was Disabled)" in capsys.readouterr().out
    assert mappings(lambdas)[0]["State"] == "Disabled"  # a dry run changes nothing

    assert run(moto) == 0
    assert "did enable" in capsys.readouterr().out
    assert [m["State"] for m in mappings(lambdas)] == ["Enabled"]
    assert run(moto) == 0
    assert "already subscribed" in capsys.readouterr().out


def test_finite_retries_and_a_failure_destination(
    moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    lambdas = function_and_table(moto)
    store = "arn:aws:s3:::replicator-failures"
    assert run(moto, "--on-failure", store) == 0
    (mapping,) = mappings(lambdas)
    assert mapping["MaximumRetryAttempts"] == MappingSettings().maximum_retry_attempts > 0
    assert 0 < mapping["MaximumRecordAgeInSeconds"] < 24 * 3600  # below the stream's retention
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == store
    capsys.readouterr()
    assert run(moto, "--on-failure", store) == 0
    assert "already subscribed" in capsys.readouterr().out
