"""Roles of regions in other accounts: validated the same way in the runner's TOML and the
Lambda environment, carried through both, and STS's refusal named by role and region."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.errors import AssumeRoleFailed, translate
from dynamodb_replicator.awslambda.settings import roles_environment, settings_from_env
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.errors import AssumeRoleError, ConfigError, ThrottledError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.ops.backfill import append_region
from dynamodb_replicator.runner.config import load_config, parse_config
from tests.unit.test_errors import client_error

ARN = "arn:aws:iam::111122223333:role/replicator"


def config(**role: Any) -> dict[str, Any]:
    return {"tables": ["Orders"], "regions": [{"name": "eu-west-1"}, {"name": "us-east-1", **role}]}


def test_a_region_in_another_account_carries_its_role() -> None:
    parsed = parse_config(config(role_arn=ARN, external_id="ext-1", session_name="repl-prod"))
    eu, us = parsed.regions
    assert eu.role is None
    assert us.role == RoleSpec(ARN, "ext-1", "repl-prod")
    assert us.role.account == "111122223333"
    assert parse_config(config(role_arn=ARN)).regions[1].role == RoleSpec(
        ARN, None, "dynamodb-replicator"
    )
    gov = "arn:aws-us-gov:iam::111122223333:role/path/to/replicator"
    assert parse_config(config(role_arn=gov)).regions[1].role == RoleSpec(gov)


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ({"role_arn": "replicator"}, r"regions\[1\] \(us-east-1\): role_arn is invalid"),
        ({"role_arn": "arn:aws:iam::1111:role/x"}, "an IAM role ARN"),
        ({"role_arn": "arn:aws:iam::111122223333:user/x"}, "role_arn is invalid"),
        ({"role_arn": 5}, "role_arn is invalid"),
        ({"external_id": "ext-1"}, "external_id and session_name need a role_arn"),
        ({"role_arn": ARN, "external_id": "x"}, "external_id is invalid"),
        ({"role_arn": ARN, "session_name": "has space"}, "session_name is invalid"),
        ({"role_arn": ARN, "role": "x"}, "unknown key role"),
    ],
)
def test_bad_roles_are_one_clear_line(role: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(config(**role))
    assert "\n" not in str(caught.value)


ENV = {"AWS_REGION": "eu-west-1", "REPLICATOR_REGIONS": "eu-west-1,us-east-1,ap-south-1"}


def test_the_lambda_environment_carries_roles_as_written() -> None:
    roles = {
        "us-east-1": RoleSpec(ARN, "a,b=c", "sess"),  # commas and '=' are valid external IDs
        "ap-south-1": RoleSpec("arn:aws:iam::444455556666:role/r,1"),
    }
    env = {**ENV, **roles_environment(roles)}
    assert settings_from_env(env).roles == roles
    assert roles_environment({}) == {}
    assert settings_from_env(ENV).roles == {}
    # A per-target function still reads the roles of every listed region.
    only = settings_from_env({**env, "REPLICATOR_TARGET_REGIONS": "us-east-1"})
    assert only.regions == ("eu-west-1", "us-east-1")
    assert only.roles["us-east-1"] == roles["us-east-1"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("us-east-1=" + ARN, "must be a JSON object"),
        ("[]", "must be a JSON object"),
        (json.dumps({"sa-east-1": {"role_arn": ARN}}), r"\(sa-east-1\): not in REPLICATOR_REGIONS"),
        (json.dumps({"us-east-1": ARN}), "expected an object"),
        (json.dumps({"us-east-1": {"arn": ARN}}), "expected an object"),
        (json.dumps({"us-east-1": {}}), "role_arn is required"),
        (json.dumps({"us-east-1": {"role_arn": "x"}}), r"REPLICATOR_ROLES \(us-east-1\): role_arn"),
    ],
)
def test_bad_role_variables_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env({**ENV, "REPLICATOR_ROLES": value})


def refused(code: str, status: int = 403) -> AssumeRoleFailed:
    return AssumeRoleFailed(client_error(code, status), region="us-east-1", role_arn=ARN)


def test_a_refused_role_is_named_with_its_region() -> None:
    error = translate(refused("AccessDenied"), "us-east-1", "DescribeTable Orders")
    assert isinstance(error, AssumeRoleError) and isinstance(error, ConfigError)
    assert (error.region, error.role_arn) == ("us-east-1", ARN)
    assert str(error) == f"cannot assume role {ARN} for region us-east-1: AccessDenied: it said no"


def test_a_throttled_or_failing_sts_stays_retryable() -> None:
    assert type(translate(refused("Throttling", 400), "us-east-1", "x")) is ThrottledError
    assert translate(refused("Odd", 503), "us-east-1", "x").retryable


def test_add_region_writes_a_role_the_config_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "replicator.toml"
    path.write_text(
        'tables = ["Orders"]\n[[regions]]\nname = "eu-west-1"\n[[regions]]\nname = "b"\n'
    )
    spec = RegionSpec("sa-east-1", role=RoleSpec(ARN, "a,b=c/d:e", "repl-sa"))
    assert append_region(path, spec)
    assert load_config(path).region("sa-east-1") == spec


def test_template_notes_a_region_it_takes_to_be_in_the_stacks_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "replicator.toml"
    path.write_text(
        'tables = ["Orders"]\n[[regions]]\nname = "eu-west-1"\n'
        f'role_arn = "{ARN}"\n[[regions]]\nname = "us-east-1"\n'
    )
    assert main(["template", "--config", str(path), "--region", "eu-west-1"]) == 0
    out, err = capsys.readouterr()
    assert "note: us-east-1 has no role_arn: the stack of eu-west-1 (account 111122223333)" in err
    assert "sts:AssumeRole" in out  # Lambda's trust policy only: no role of its own to assume
    assert "REPLICATOR_ROLES" not in out and "AssumeTargetRoles" not in out
