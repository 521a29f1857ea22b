"""The least-privilege policy of one source region's replicator role. Pure: builds a dict.

No wildcard action and no ``*`` resource: the streams and tombstone tables of this region,
the tables and tombstone tables of every region in the stack's own account (the source
included, for self-repair), ``sts:AssumeRole`` on the roles of the regions in other
accounts (what those roles allow is up to their account), the stack's own failure store and
the functions' own log groups.

Accounts: the stack runs in the source region's account. A role the config gives the source
region only names that account (the functions never assume it); another region's role is
assumed unless it is in that same account; a region without a role is in the stack's account.
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.deploy.cfn import ACCOUNT, FAILURE_STORE, PARTITION, table_arn
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["assumed_roles", "role_policy"]


def _statement(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def assumed_roles(config: RunnerConfig, region: str) -> dict[str, RoleSpec]:
    """The roles ``region``'s functions assume, by target region: those of the regions in
    another account than the stack's (see the module docstring)."""
    own = config.region(region).role
    home = own.account if own is not None else None
    return {
        spec.name: spec.role
        for spec in config.regions
        if spec.name != region and spec.role is not None and spec.role.account != home
    }


def role_policy(config: RunnerConfig, region: str) -> dict[str, Any]:
    """The policy document of the role of ``region``'s functions."""
    names = config.replication.names
    suffix = config.replication.tombstone_suffix
    roles = assumed_roles(config, region)
    regions = [r.name for r in config.regions if r.name not in roles]
    # Each region's tables by their names there: (region, name) pairs.
    here = [names.physical(t, region) for t in config.tables]
    everywhere = [(r, names.physical(t, r)) for r in regions for t in config.tables]
    stream_actions = [
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    ]
    logs = f"arn:{PARTITION}:logs:{region}:{ACCOUNT}:log-group:/aws/lambda/${{NamePrefix}}-*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement(
                "ReadSourceStreams",
                stream_actions,
                [table_arn(region, f"{t}/stream/*") for t in here],
            ),
            _statement(
                "ReadRememberedDeletes",
                ["dynamodb:BatchGetItem"],
                [table_arn(region, f"{t}{suffix}") for t in here],
            ),
            # The write protocol reads too (core/writes.py): the tombstones before and after
            # a put, the item where settling finds a newer delete, the item after a delete
            # in its own region.
            _statement(
                "WriteReplicas",
                [
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:BatchGetItem",
                ],
                [table_arn(r, t) for r, t in everywhere],
            ),
            _statement(
                "RememberDeletes",
                ["dynamodb:PutItem", "dynamodb:ConditionCheckItem", "dynamodb:BatchGetItem"],
                [table_arn(r, f"{t}{suffix}") for r, t in everywhere],
            ),
            # Lambda writes a discarded batch's invocation record with the function's role.
            _statement(
                "OnFailureDestination",
                ["s3:PutObject"],
                [{"Fn::Sub": f"${{{FAILURE_STORE}.Arn}}/*"}],
            ),
            _statement(
                "OnFailureDestinationBucket",
                ["s3:ListBucket"],
                [{"Fn::GetAtt": [FAILURE_STORE, "Arn"]}],
            ),
            _statement("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [{"Fn::Sub": logs}]),
            *_assume(roles),
        ],
    }


def _assume(roles: dict[str, RoleSpec]) -> list[dict[str, Any]]:
    arns = sorted({role.role_arn for role in roles.values()})
    return [_statement("AssumeTargetRoles", ["sts:AssumeRole"], list(arns))] if arns else []
