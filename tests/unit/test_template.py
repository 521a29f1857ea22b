"""The CloudFormation template: least-privilege IAM, mappings, cfn-lint clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.deploy.template import (
    TableKeys,
    TemplateOptions,
    build_template,
    to_yaml,
)
from dynamodb_replicator.runner.config import parse_config

CONFIG = parse_config(
    {
        "tables": ["Orders", "Users"],
        "regions": [{"name": "us-east-1"}, {"name": "eu-west-1"}, {"name": "ap-southeast-1"}],
    }
)


def statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = template["Resources"]["ReplicatorRole"]["Properties"]["Policies"][0]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def arns(statement: dict[str, Any]) -> list[str]:
    return sorted(
        r["Fn::Sub"] if isinstance(r, dict) and "Fn::Sub" in r else json.dumps(r)
        for r in statement["Resource"]
    )


def test_iam_names_only_the_resources_it_needs() -> None:
    found = statements(build_template(CONFIG, TemplateOptions("eu-west-1")))
    table = "arn:${AWS::Partition}:dynamodb:%s:${AWS::AccountId}:table/%s"
    assert arns(found["ReadSourceStreams"]) == sorted(
        table % ("eu-west-1", f"{t}/stream/*") for t in ("Orders", "Users")
    )
    assert arns(found["ReadRememberedDeletes"]) == sorted(
        table % ("eu-west-1", f"{t}.__tombstones") for t in ("Orders", "Users")
    )
    regions = ("us-east-1", "eu-west-1", "ap-southeast-1")
    assert arns(found["WriteReplicas"]) == sorted(
        table % (r, t) for r in regions for t in ("Orders", "Users")
    )
    assert found["WriteReplicas"]["Action"] == [
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    ]
    for statement in found.values():
        assert all("*" not in action for action in statement["Action"]), statement
        assert "*" not in statement["Resource"]
    everything = json.dumps(found)
    assert "Scan" not in everything and "dynamodb:*" not in everything


def test_one_mapping_per_table_with_safe_settings() -> None:
    template = build_template(CONFIG, TemplateOptions("us-east-1"))
    resources = template["Resources"]
    mapping_list = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mapping_list) == 2
    for mapping in mapping_list:
        properties = mapping["Properties"]
        assert properties["StartingPosition"] == "TRIM_HORIZON"
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert properties["BisectBatchOnFunctionError"] is True
        assert "OnFailure" in properties["DestinationConfig"]
    function = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["REPLICATOR_SOURCE_REGION"] == "us-east-1"
    assert function["Properties"]["Handler"] == "dynamodb_replicator.lambda_handler.handler"


def test_per_target_functions_isolate_regions() -> None:
    template = build_template(CONFIG, TemplateOptions("us-east-1", per_target=True))
    functions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    targets = sorted(f["Environment"]["Variables"]["REPLICATOR_TARGET_REGIONS"] for f in functions)
    assert targets == ["ap-southeast-1", "eu-west-1"]


@pytest.mark.parametrize(
    "options",
    [
        TemplateOptions("eu-west-1"),
        TemplateOptions(
            "eu-west-1",
            per_target=True,
            with_tables={
                "Orders": TableKeys((("pk", "HASH", "S"), ("sk", "RANGE", "N"))),
                "Users": TableKeys((("id", "HASH", "B"),)),
            },
        ),
    ],
    ids=["one-function", "per-target-with-tables"],
)
def test_template_passes_cfn_lint(options: TemplateOptions, tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(to_yaml(build_template(CONFIG, options)))
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--regions", "eu-west-1", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
