"""The CloudFormation template: least-privilege IAM, mappings, cfn-lint clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.awslambda.settings import settings_from_env
from dynamodb_replicator.core.model import ItemKey, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.deploy.mapping import DEFAULT_NAME_PREFIX, function_name
from dynamodb_replicator.deploy.package import code_key
from dynamodb_replicator.deploy.template import (
    TableKeys,
    TemplateOptions,
    build_template,
    to_yaml,
)
from dynamodb_replicator.runner.config import parse_config
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

CONFIG = parse_config(
    {
        "tables": ["Orders", "Users"],
        "regions": [{"name": "us-east-1"}, {"name": "eu-west-1"}, {"name": "ap-southeast-1"}],
    }
)


def statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    policy = template["Resources"]["ReplicatorRole"]["Properties"]["Policies"][0]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The properties of the template's resources of type ``kind``."""
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


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
        "dynamodb:BatchGetItem",
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
    functions = of_type(template, "AWS::Lambda::Function")
    targets = sorted(f["Environment"]["Variables"]["REPLICATOR_TARGET_REGIONS"] for f in functions)
    assert targets == ["ap-southeast-1", "eu-west-1"]


@pytest.mark.parametrize(
    "options",
    [
        TemplateOptions("eu-west-1"),
        TemplateOptions("eu-west-1", code_key="replicator-lambda-0123456789abcdef.zip"),
        TemplateOptions(
            "eu-west-1",
            per_target=True,
            with_tables={
                "Orders": TableKeys((("pk", "HASH", "S"), ("sk", "RANGE", "N"))),
                "Users": TableKeys((("id", "HASH", "B"),)),
            },
        ),
    ],
    ids=["one-function", "with-code-key", "per-target-with-tables"],
)
def test_template_passes_cfn_lint(options: TemplateOptions, tmp_path: Path) -> None:
    assert_lint_clean(build_template(CONFIG, options), tmp_path)


def assert_lint_clean(template: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(to_yaml(template))
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--regions", "eu-west-1", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def functions(template: dict[str, Any]) -> list[dict[str, Any]]:
    return of_type(template, "AWS::Lambda::Function")


REGIONS = [{"name": "us-east-1"}, {"name": "eu-west-1"}, {"name": "ap-southeast-1"}]
CONFIGS = {
    "defaults": {},
    "issue-15": {
        "policy": "preferred-region:eu-west-1",
        "tombstone_ttl_seconds": 7200,
        "max_workers": 48,
    },
    "everything": {
        "policy": "dynamodb_replicator.core.policy:LastWriterWins",
        "missing_timestamp": "skip",
        "tombstone_suffix": ".graves",
        "tombstone_ttl_seconds": 86400,
        "max_workers": 3,
        "conflict_log": "off",
        "conflict_sample_rate": 0.25,
        "conflict_log_items": True,
    },
}


@pytest.mark.parametrize("per_target", [False, True], ids=["one-function", "per-target"])
@pytest.mark.parametrize("extra", CONFIGS.values(), ids=CONFIGS.keys())
def test_each_function_replicates_as_the_runner_would(
    extra: dict[str, Any], per_target: bool
) -> None:
    config = parse_config({"tables": ["Orders"], "regions": REGIONS, **extra})
    template = build_template(config, TemplateOptions("eu-west-1", per_target=per_target))
    found = functions(template)
    assert len(found) == (2 if per_target else 1)
    targets: list[str] = []
    for function in found:
        # The handler's own reader, on exactly what the function is deployed with.
        settings = settings_from_env(function["Environment"]["Variables"])
        assert settings.replication == config.replication
        assert settings.source == "eu-west-1"
        targets += settings.regions[1:]
    assert sorted(targets) == ["ap-southeast-1", "us-east-1"]


def test_a_conflict_log_file_becomes_the_functions_log() -> None:
    config = parse_config({"tables": ["Orders"], "regions": REGIONS, "conflict_log": "c.jsonl"})
    (function,) = functions(build_template(config, TemplateOptions("eu-west-1")))
    settings = settings_from_env(function["Environment"]["Variables"])
    assert settings.replication.conflict_log.destination == "-"
    assert settings.replication.policy == config.replication.policy


def test_names_carry_the_prefix_parameter() -> None:
    template = build_template(CONFIG, TemplateOptions("us-east-1", name_prefix="blue"))
    assert template["Parameters"]["NamePrefix"]["Default"] == "blue"
    resources = template["Resources"]
    (function,) = functions(template)
    assert function["FunctionName"] == {"Fn::Sub": "${NamePrefix}-us-east-1"}
    (group,) = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${NamePrefix}-us-east-1"}
    logs = statements(template)["Logs"]["Resource"][0]["Fn::Sub"]
    assert logs.endswith(":log-group:/aws/lambda/${NamePrefix}-*")
    # The subscribe command's default function name is the template's.
    assert function_name(DEFAULT_NAME_PREFIX, "us-east-1") == "dynamodb-replicator-us-east-1"


def test_the_code_key_is_the_packages_content_hash() -> None:
    bare = build_template(CONFIG, TemplateOptions("us-east-1"))
    assert "Default" not in bare["Parameters"]["CodeS3Key"]  # no stale key to fall back on
    key = code_key("ab" * 32)
    keyed = build_template(CONFIG, TemplateOptions("us-east-1", code_key=key))
    assert keyed["Parameters"]["CodeS3Key"]["Default"] == key
    assert code_key("ab" * 32) != code_key("cd" * 32)


def test_failed_batches_go_whole_to_an_s3_store_within_finite_limits() -> None:
    template = build_template(CONFIG, TemplateOptions("us-east-1", per_target=True))
    resources, parameters = template["Resources"], template["Parameters"]
    assert parameters["MaximumRetryAttempts"]["Default"] > 0
    assert 0 < parameters["MaximumRecordAgeInSeconds"]["Default"] < 24 * 3600
    stores = [name for name, r in resources.items() if r["Type"] == "AWS::S3::Bucket"]
    assert len(stores) == 1
    for resource in resources.values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            destination = resource["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
            assert destination == {"Fn::GetAtt": [stores[0], "Arn"]}
            assert resource["Properties"]["BisectBatchOnFunctionError"] is True
    found = statements(template)
    assert found["OnFailureDestination"]["Action"] == ["s3:PutObject"]
    assert found["OnFailureDestination"]["Resource"] == [{"Fn::Sub": f"${{{stores[0]}.Arn}}/*"}]
    assert "sqs" not in json.dumps(found)


def test_alarms_notify_the_topic_parameter() -> None:
    template = build_template(CONFIG, TemplateOptions("us-east-1", per_target=True))
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    metrics = sorted(a["MetricName"] for a in alarms)
    # Per function (two): IteratorAge, DestinationDeliveryFailures, Failed per table (two);
    # one for the failure store.
    assert metrics.count("IteratorAge") == 2
    assert metrics.count("DestinationDeliveryFailures") == 2
    assert metrics.count("Failed") == 4
    assert metrics.count("PutRequests") == 1
    for alarm in alarms:
        assert alarm["AlarmActions"]["Fn::If"][1] == [{"Ref": "AlarmTopicArn"}]
    failed = [a for a in alarms if a["MetricName"] == "Failed"]
    assert {a["Namespace"] for a in failed} == {"DynamoDBReplicator"}
    assert sorted(tuple(d["Value"] for d in a["Dimensions"]) for a in failed) == sorted(
        (t, "us-east-1", r) for t in ("Orders", "Users") for r in ("eu-west-1", "ap-southeast-1")
    )


ACCOUNT_A = "arn:aws:iam::111111111111:role/replicator"
ACCOUNT_B = "arn:aws:iam::222222222222:role/replicator"
# A runner in a tooling account reaches every region through a role; us-east-1 and
# ap-southeast-1 share account A, eu-west-1 is in account B.
ROLES = parse_config(
    {
        "tables": ["Orders"],
        "regions": [
            {"name": "us-east-1", "role_arn": ACCOUNT_A},
            {"name": "eu-west-1", "role_arn": ACCOUNT_B, "external_id": "ext-b"},
            {"name": "ap-southeast-1", "role_arn": ACCOUNT_A, "session_name": "repl-ap"},
        ],
    }
)
TABLE_ARN = "arn:${AWS::Partition}:dynamodb:%s:${AWS::AccountId}:table/%s"


@pytest.mark.parametrize(
    ("source", "direct", "assumed", "role_arns"),
    [
        ("us-east-1", ["us-east-1", "ap-southeast-1"], ["eu-west-1"], [ACCOUNT_B]),
        ("eu-west-1", ["eu-west-1"], ["us-east-1", "ap-southeast-1"], [ACCOUNT_A]),
    ],
)
def test_regions_in_other_accounts_are_reached_through_their_roles(
    source: str, direct: list[str], assumed: list[str], role_arns: list[str]
) -> None:
    template = build_template(ROLES, TemplateOptions(source))
    found = statements(template)
    # Tables of the stack's own account only: no ARN of another account's table is built
    # with ${AWS::AccountId}.
    assert arns(found["WriteReplicas"]) == sorted(TABLE_ARN % (r, "Orders") for r in direct)
    assert arns(found["RememberDeletes"]) == sorted(
        TABLE_ARN % (r, "Orders.__tombstones") for r in direct
    )
    for region in assumed:
        assert f":dynamodb:{region}:" not in json.dumps(found)
    roles = {r: ROLES.region(r).role for r in assumed}
    assert found["AssumeTargetRoles"]["Action"] == ["sts:AssumeRole"]
    assert found["AssumeTargetRoles"]["Resource"] == role_arns
    # The handler's own reader finds exactly those roles in the function's environment.
    (function,) = functions(template)
    assert settings_from_env(function["Environment"]["Variables"]).roles == roles
    assert template["Outputs"]["ReplicatorRoleArn"]["Value"] == {
        "Fn::GetAtt": ["ReplicatorRole", "Arn"]
    }


def test_per_target_functions_carry_only_their_targets_role() -> None:
    template = build_template(ROLES, TemplateOptions("eu-west-1", per_target=True))
    for function in functions(template):
        settings = settings_from_env(function["Environment"]["Variables"])
        (target,) = settings.regions[1:]
        assert settings.roles == {target: ROLES.region(target).role}
    assert settings.roles != {}


def test_a_single_account_config_assumes_nothing() -> None:
    template = build_template(CONFIG, TemplateOptions("eu-west-1"))
    assert "AssumeTargetRoles" not in statements(template)
    (function,) = functions(template)
    assert "REPLICATOR_ROLES" not in function["Environment"]["Variables"]


def test_a_config_with_roles_gives_a_lint_clean_template(tmp_path: Path) -> None:
    template = build_template(ROLES, TemplateOptions("eu-west-1", per_target=True))
    assert_lint_clean(template, tmp_path)
    assert ROLES.region("eu-west-1").role == RoleSpec(ACCOUNT_B, "ext-b")


# What aws/store.py sends for each call of the store port.
STORE_API = {"put": "PutItem", "delete": "DeleteItem", "get": "BatchGetItem"}


def protocol_calls() -> set[tuple[str, str]]:
    """(API, table) of every call the real write protocol makes in one region over an
    insert, an update, a delete, a late put after a delete (settled) and a delete in the
    region whose application deleted the item."""

    store = MemoryStore("eu-west-1")
    protocol = WriteProtocol(
        store, LastWriterWins(FIELDS), FIELDS, ManualClock(100.0), ".__tombstones", 60
    )
    writer = StoreWriter(protocol, WriterOptions(max_in_flight=2, backoff=Backoff(base=0.0)))
    key = ItemKey.from_attributes({"pk": {"S": "k"}})

    def put(ts: str, seq: str, replaces: str | None = None) -> PutVersion:
        image = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": ts}}
        old = Version.of(replaces, "us-east-1") if replaces else None
        return PutVersion(key, Version.of(ts, "us-east-1"), image, seq, old)

    writer.apply("Orders", [put("1", "1"), put("2", "2", "1")])
    writer.apply("Orders", [DeleteVersion(key, Version.of("3", "us-east-1"), "us-east-1", "3")])
    late = put("2", "4", "1")
    writer.apply("Orders", [late])
    store.write_directly("Orders", key, late.image)  # the late put landed (P0 read lost)
    writer.apply("Orders", [put("2", "5")])  # settling finds the newer delete, reads the item
    writer.apply("Orders", [DeleteVersion(key, Version.of("6", "us-east-1"), "eu-west-1", "6")])
    writer.close()
    return {(STORE_API[call.split()[0]], call.split()[1]) for call in store.calls}


def test_the_function_may_make_every_call_the_write_protocol_makes() -> None:
    calls = protocol_calls()
    assert ("BatchGetItem", "Orders") in calls and ("BatchGetItem", "Orders.__tombstones") in calls
    found = statements(build_template(CONFIG, TemplateOptions("us-east-1"))).values()
    table = "arn:${AWS::Partition}:dynamodb:%s:${AWS::AccountId}:table/%s"
    for region in ("us-east-1", "eu-west-1", "ap-southeast-1"):
        for api, name in calls:
            allowed = [
                s
                for s in found
                if f"dynamodb:{api}" in s["Action"] and table % (region, name) in arns(s)
            ]
            assert allowed, f"{api} on {name} in {region} is not allowed"
