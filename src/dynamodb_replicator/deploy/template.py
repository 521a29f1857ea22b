"""The CloudFormation template for one source region.

Per source region: a function (or one per target region, ``per_target``) attached to every
table's stream, a least-privilege role (``deploy.iam``), an S3 failure store and alarms
(``deploy.alarms``), and optionally the tables and tombstone tables themselves. Every
replication setting of the config goes into each function's environment. Function and log
group names start with the ``NamePrefix`` parameter, so several stacks fit in one account
and region. Pure: builds a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from dynamodb_replicator.awslambda.settings import replication_environment, roles_environment
from dynamodb_replicator.core.defaults import METRICS_NAMESPACE
from dynamodb_replicator.deploy.alarms import (
    alarm_conditions,
    failure_store,
    function_alarms,
    store_alarm,
)
from dynamodb_replicator.deploy.cfn import FAILURE_STORE, logical_id
from dynamodb_replicator.deploy.dashboard import dashboard
from dynamodb_replicator.deploy.iam import assumed_roles, role_policy
from dynamodb_replicator.deploy.mapping import (
    DEFAULT_NAME_PREFIX,
    MappingSettings,
    function_name,
)
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["TableKeys", "TemplateOptions", "build_template", "to_yaml"]


@dataclass(frozen=True, slots=True)
class TableKeys:
    """A table's key schema, for ``with_tables``: ((name, HASH|RANGE, S|N|B), ...)."""

    keys: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class TemplateOptions:
    """``code_key``: the default of ``CodeS3Key`` (none: the parameter must be given)."""

    region: str
    per_target: bool = False
    with_tables: Mapping[str, TableKeys] | None = None
    code_key: str | None = None
    name_prefix: str = DEFAULT_NAME_PREFIX


def _number(default: int, low: int, high: int | None = None, about: str = "") -> dict[str, Any]:
    parameter: dict[str, Any] = {"Type": "Number", "Default": default, "MinValue": low}
    if high is not None:
        parameter["MaxValue"] = high
    if about:
        parameter["Description"] = about
    return parameter


def _parameters(config: RunnerConfig, options: TemplateOptions) -> dict[str, Any]:
    mapping = MappingSettings()
    key: dict[str, Any] = {
        "Type": "String",
        "Description": "content-hashed key of the zip (printed by dynamodb-replicator package)",
    }
    if options.code_key:
        key["Default"] = options.code_key
    parameters: dict[str, Any] = {
        "CodeS3Bucket": {"Type": "String", "Description": "bucket holding the Lambda zip"},
        "CodeS3Key": key,
        "NamePrefix": {
            "Type": "String",
            "Default": options.name_prefix,
            "AllowedPattern": "^[A-Za-z0-9_-]{1,30}$",
            "Description": "functions are PREFIX-REGION[-to-TARGET]: one prefix per stack",
        },
        "Architecture": {
            "Type": "String",
            "Default": "arm64",
            "AllowedValues": ["arm64", "x86_64"],
        },
        "MemorySize": _number(512, 128, 10240),
        "Timeout": _number(300, 10, 900),
        "BatchSize": _number(mapping.batch_size, 1, 10000),
        "ParallelizationFactor": _number(mapping.parallelization_factor, 1, 10),
        "MaximumRetryAttempts": _number(
            mapping.maximum_retry_attempts, -1, 10000, "-1: retry until the record is too old"
        ),
        "MaximumRecordAgeInSeconds": _number(
            mapping.maximum_record_age_in_seconds, -1, 604800, "keep it below the 24 h retention"
        ),
        "FailureRetentionDays": _number(30, 1, about="days the failure store keeps a batch"),
        "AlarmTopicArn": {
            "Type": "String",
            "Default": "",
            "Description": "SNS topic the alarms notify (empty: none)",
        },
        "IteratorAgeAlarmMilliseconds": _number(300000, 1000),
    }
    if options.with_tables is None:
        for table in config.tables:
            physical = config.replication.names.physical(table, options.region)
            parameters[f"{logical_id(table)}StreamArn"] = {
                "Type": "String",
                "Description": f"LatestStreamArn of {physical} (NEW_AND_OLD_IMAGES)",
            }
    return parameters


def _function(
    config: RunnerConfig, region: str, name: str, target: str | None, *, logs: str
) -> dict[str, Any]:
    environment = {
        "REPLICATOR_SOURCE_REGION": region,
        "REPLICATOR_REGIONS": ",".join(r.name for r in config.regions),
        **replication_environment(config.replication),
    }
    if target:
        environment["REPLICATOR_TARGET_REGIONS"] = target
    roles = assumed_roles(config, region)
    environment |= roles_environment({r: roles[r] for r in roles if target in (None, r)})
    return {
        "Type": "AWS::Lambda::Function",
        "DependsOn": [logs],
        "Properties": {
            "FunctionName": {"Fn::Sub": name},
            "Runtime": "python3.12",
            "Handler": "dynamodb_replicator.lambda_handler.handler",
            "Architectures": [{"Ref": "Architecture"}],
            "MemorySize": {"Ref": "MemorySize"},
            "Timeout": {"Ref": "Timeout"},
            "Role": {"Fn::GetAtt": ["ReplicatorRole", "Arn"]},
            "Code": {"S3Bucket": {"Ref": "CodeS3Bucket"}, "S3Key": {"Ref": "CodeS3Key"}},
            "Environment": {"Variables": environment},
        },
    }


def _mapping(function: str, stream_arn: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "FunctionName": {"Ref": function},
            "EventSourceArn": stream_arn,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": {"Ref": "BatchSize"},
            "ParallelizationFactor": {"Ref": "ParallelizationFactor"},
            "MaximumRetryAttempts": {"Ref": "MaximumRetryAttempts"},
            "MaximumRecordAgeInSeconds": {"Ref": "MaximumRecordAgeInSeconds"},
            "BisectBatchOnFunctionError": MappingSettings().bisect_on_error,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": [FAILURE_STORE, "Arn"]}}
            },
        },
    }


def _stream_arn(table: str, with_tables: bool) -> Any:
    if with_tables:
        return {"Fn::GetAtt": [f"{logical_id(table)}Table", "StreamArn"]}
    return {"Ref": f"{logical_id(table)}StreamArn"}


def _table(name: str, shape: TableKeys, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k, _ in shape.keys],
            "AttributeDefinitions": [
                {"AttributeName": n, "AttributeType": t} for n, _, t in shape.keys
            ],
            **extra,
        },
    }


def _tables(keys: Mapping[str, TableKeys], config: RunnerConfig, region: str) -> dict[str, Any]:
    """The tables (by their names in ``region``) and their tombstone tables."""
    resources: dict[str, Any] = {}
    names, suffix = config.replication.names, config.replication.tombstone_suffix
    for table, shape in keys.items():
        stream = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
        physical = names.physical(table, region)
        resources[f"{logical_id(table)}Table"] = _table(physical, shape, StreamSpecification=stream)
        ttl = {"AttributeName": "__expiresAt", "Enabled": True}
        resources[f"{logical_id(table)}Tombstones"] = _table(
            f"{physical}{suffix}", shape, TimeToLiveSpecification=ttl
        )
    return resources


def _role(config: RunnerConfig, region: str) -> dict[str, Any]:
    trust = {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Principal": {"Service": "lambda.amazonaws.com"},
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
            "Policies": [
                {"PolicyName": "replicate", "PolicyDocument": role_policy(config, region)}
            ],
        },
    }


def _functions(config: RunnerConfig, options: TemplateOptions) -> dict[str, Any]:
    region = options.region
    targets = [r.name for r in config.regions if r.name != region]
    groups: list[str | None] = list(targets) if options.per_target else [None]
    resources: dict[str, Any] = {}
    for target in groups:
        name = function_name("${NamePrefix}", region, target)  # for Fn::Sub
        # Logical IDs keep the default prefix whatever NamePrefix is: an upgraded stack
        # updates its functions in place instead of replacing them.
        logical = logical_id(function_name(DEFAULT_NAME_PREFIX, region, target))
        resources[f"{logical}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/{name}"},
                "RetentionInDays": 30,
            },
        }
        resources[logical] = _function(config, region, name, target, logs=f"{logical}Logs")
        for table in config.tables:
            stream = _stream_arn(table, options.with_tables is not None)
            resources[f"{logical}{logical_id(table)}Mapping"] = _mapping(logical, stream)
        resources |= function_alarms(
            logical,
            source=region,
            tables=config.tables,
            targets=[target] if target else targets,
            namespace=METRICS_NAMESPACE,
        )
    return resources


def build_template(config: RunnerConfig, options: TemplateOptions) -> dict[str, Any]:
    """The CloudFormation template (a dict) for the source region ``options.region``."""
    region = options.region
    targets = [r.name for r in config.regions if r.name != region]
    resources: dict[str, Any] = {
        FAILURE_STORE: failure_store(),
        f"{FAILURE_STORE}Alarm": store_alarm(),
        "ReplicatorRole": _role(config, region),
    }
    if options.with_tables is not None:
        resources |= _tables(options.with_tables, config, region)
    resources |= _functions(config, options)
    groups: list[str | None] = list(targets) if options.per_target else [None]
    resources["ReplicatorDashboard"] = dashboard(
        tables=config.tables,
        source=region,
        targets=targets,
        functions=[function_name("${NamePrefix}", region, t) for t in groups],
        namespace=METRICS_NAMESPACE,
    )
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"dynamodb-replicator: replicate {', '.join(config.tables)} from {region} "
        f"to {', '.join(targets)}",
        "Parameters": _parameters(config, options),
        "Conditions": alarm_conditions(),
        "Resources": resources,
        "Outputs": {
            "FailureStoreBucket": {"Value": {"Ref": FAILURE_STORE}},
            # What a role in another account trusts (docs/operating/lambda.md: cross-account roles).
            "ReplicatorRoleArn": {"Value": {"Fn::GetAtt": ["ReplicatorRole", "Arn"]}},
        },
    }


class _NoAliases(yaml.SafeDumper):
    """CloudFormation rejects YAML anchors and aliases: write repeated values out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(template: Mapping[str, Any]) -> str:
    """The template as YAML, without anchors."""
    return yaml.dump(dict(template), Dumper=_NoAliases, sort_keys=False, width=100)
