"""The generated stack deploys on moto's CloudFormation, twice side by side, and updates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.package import build_keyed_zip, code_key, file_digest
from dynamodb_replicator.deploy.template import TableKeys, TemplateOptions, build_template, to_yaml
from dynamodb_replicator.runner.config import parse_config
from tests.moto_server import MotoServer
from tests.support import create_table

CONFIG = parse_config(
    {
        "tables": ["Orders"],
        "regions": [{"name": "us-east-1"}, {"name": "eu-west-1"}, {"name": "ap-southeast-1"}],
        "policy": "preferred-region:eu-west-1",
    }
)


def settled(cloudformation: Any, stack: str) -> dict[str, Any]:
    """The stack once no operation is in progress (moto finishes within the minute)."""
    deadline = time.monotonic() + 60
    while True:
        found: dict[str, Any] = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        if not found["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def parameters(**values: str) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def upload(s3: Any, directory: Path) -> str:
    archive = build_keyed_zip(directory)
    s3.put_object(Bucket="code", Key=archive.name, Body=archive.read_bytes())
    return archive.name


def test_two_stacks_deploy_side_by_side_and_a_new_package_updates_the_code(
    moto: MotoServer, tmp_path: Path
) -> None:
    spec = RegionSpec("us-east-1", moto.endpoint_url)
    s3, cloudformation = make_client("s3", spec), make_client("cloudformation", spec)
    lambdas = make_client("lambda", spec)
    s3.create_bucket(Bucket="code")
    key = upload(s3, tmp_path)
    topic = make_client("sns", spec).create_topic(Name="oncall")["TopicArn"]
    options = TemplateOptions(
        "us-east-1", per_target=True, with_tables={"Orders": TableKeys((("pk", "HASH", "S"),))}
    )
    cloudformation.create_stack(
        StackName="blue",
        TemplateBody=to_yaml(build_template(CONFIG, options)),
        Parameters=parameters(
            CodeS3Bucket="code", CodeS3Key=key, NamePrefix="blue", AlarmTopicArn=topic
        ),
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = settled(cloudformation, "blue")
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    # A second stack in the same account and region: another prefix, no name clash.
    alone = TemplateOptions("us-east-1", code_key=key)
    cloudformation.create_stack(
        StackName="green",
        TemplateBody=to_yaml(build_template(CONFIG, alone)),
        Parameters=parameters(
            CodeS3Bucket="code",
            NamePrefix="green",
            OrdersStreamArn=make_client("dynamodb", spec).describe_table(TableName="Orders")[
                "Table"
            ]["LatestStreamArn"],
        ),
        Capabilities=["CAPABILITY_IAM"],
    )
    green = settled(cloudformation, "green")
    assert green["StackStatus"] == "CREATE_COMPLETE", green.get("StackStatusReason")
    names = sorted(f["FunctionName"] for f in lambdas.list_functions()["Functions"])
    assert names == [
        "blue-us-east-1-to-ap-southeast-1",
        "blue-us-east-1-to-eu-west-1",
        "green-us-east-1",
    ]
    function = lambdas.get_function(FunctionName="green-us-east-1")
    variables = function["Configuration"]["Environment"]["Variables"]
    assert variables["REPLICATOR_POLICY"] == "preferred-region:eu-west-1"
    mappings = lambdas.list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 3  # two per-target functions and the green one
    stores = {m["DestinationConfig"]["OnFailure"]["Destination"] for m in mappings}
    assert len(stores) == 2 and all(s.startswith("arn:aws:s3:::") for s in stores)
    # (moto creates no CloudWatch alarms from a template: their shape is a unit test's.)

    # The same sources give the same key; new code gives a new key, and a stack update
    # with it reaches the function.
    before = function["Configuration"]["CodeSha256"]
    (tmp_path / "again").mkdir()
    assert upload(s3, tmp_path / "again") == key
    changed = tmp_path / "changed.zip"
    changed.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: other content
    new_key = code_key(file_digest(changed))
    assert new_key != key
    s3.put_object(Bucket="code", Key=new_key, Body=changed.read_bytes())
    cloudformation.update_stack(
        StackName="green",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "CodeS3Bucket", "UsePreviousValue": True},
            {"ParameterKey": "NamePrefix", "UsePreviousValue": True},
            {"ParameterKey": "OrdersStreamArn", "UsePreviousValue": True},
            {"ParameterKey": "CodeS3Key", "ParameterValue": new_key},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    green = settled(cloudformation, "green")
    assert green["StackStatus"] == "UPDATE_COMPLETE", green.get("StackStatusReason")
    after = lambdas.get_function(FunctionName="green-us-east-1")["Configuration"]
    assert after["CodeSha256"] != before


def write_config(path: Path, endpoint: str) -> Path:
    regions = [{"name": r, "endpoint_url": endpoint} for r in ("us-east-1", "eu-west-1")]
    lines = ['tables = ["Orders"]']
    for region in regions:
        lines += ["[[regions]]", f'name = "{region["name"]}"']
        lines.append(f'endpoint_url = "{region["endpoint_url"]}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_with_tables_reads_key_schemas_from_the_named_region(
    moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "replicator.toml", moto.endpoint_url)
    source = make_client("dynamodb", RegionSpec("eu-west-1", moto.endpoint_url))
    create_table(source, "Orders", (("pk", "S"), ("at", "N")), region="eu-west-1")
    command = ["template", "--config", str(config), "--region", "us-east-1", "--with-tables"]
    assert main(command) == 2
    assert "--schema-from" in capsys.readouterr().err
    assert main([*command, "--schema-from", "us-east-1"]) == 2
    assert "would create the tables" in capsys.readouterr().err
    out = tmp_path / "us.json"
    shape = ["--schema-from", "eu-west-1", "--output", "json", "--out-file", str(out)]
    assert main([*command, *shape]) == 0
    table = json.loads(out.read_text())["Resources"]["OrdersTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "at", "KeyType": "RANGE"},
    ]
