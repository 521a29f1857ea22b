"""The least-privilege policy of one source region's replicator role. Pure: builds a dict.

No wildcard action and no ``*`` resource: the streams and tombstone tables of this region,
the tables and tombstone tables of every region (the source included, for self-repair), the
stack's own failure store and the functions' own log groups.
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.deploy.cfn import ACCOUNT, FAILURE_STORE, PARTITION, table_arn
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["role_policy"]


def _statement(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def role_policy(config: RunnerConfig, region: str) -> dict[str, Any]:
    """The policy document of the role of ``region``'s functions."""
    names = config.replication.names
    suffix = config.replication.tombstone_suffix
    regions = [r.name for r in config.regions]
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
            _statement(
                "WriteReplicas",
                ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"],
                [table_arn(r, t) for r, t in everywhere],
            ),
            _statement(
                "RememberDeletes",
                ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"],
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
        ],
    }
