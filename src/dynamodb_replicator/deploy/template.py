"""The CloudFormation template for one source region.

Per source region: a function (or one per target region, ``per_target``) attached to every
table's stream, a least-privilege role, an SQS on-failure destination, an iterator-age
alarm, and optionally the tables and tombstone tables themselves. Pure: builds a dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["TableKeys", "TemplateOptions", "build_template", "to_yaml"]

PARTITION = "${AWS::Partition}"
ACCOUNT = "${AWS::AccountId}"


@dataclass(frozen=True, slots=True)
class TableKeys:
    """A table's key schema, for ``with_tables``: ((name, HASH|RANGE, S|N|B), ...)."""

    keys: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class TemplateOptions:
    region: str
    per_target: bool = False
    with_tables: Mapping[str, TableKeys] | None = None


def _logical(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _table_arn(region: str, table: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{table}"}


def _parameters(tables: Sequence[str], with_tables: bool) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "CodeS3Bucket": {"Type": "String", "Description": "bucket holding the Lambda zip"},
        "CodeS3Key": {"Type": "String", "Default": "replicator-lambda.zip"},
        "Architecture": {
            "Type": "String",
            "Default": "arm64",
            "AllowedValues": ["arm64", "x86_64"],
        },
        "MemorySize": {"Type": "Number", "Default": 512, "MinValue": 128, "MaxValue": 10240},
        "Timeout": {"Type": "Number", "Default": 300, "MinValue": 10, "MaxValue": 900},
        "BatchSize": {"Type": "Number", "Default": 100, "MinValue": 1, "MaxValue": 10000},
        "ParallelizationFactor": {"Type": "Number", "Default": 1, "MinValue": 1, "MaxValue": 10},
        "MaximumRetryAttempts": {
            "Type": "Number",
            "Default": -1,
            "MinValue": -1,
            "MaxValue": 10000,
            "Description": "-1: retry until the record leaves the stream (nothing skipped)",
        },
        "MaximumRecordAgeInSeconds": {
            "Type": "Number",
            "Default": -1,
            "MinValue": -1,
            "MaxValue": 604800,
            "Description": "-1: no limit below the stream retention",
        },
        "IteratorAgeAlarmMilliseconds": {"Type": "Number", "Default": 300000, "MinValue": 1000},
    }
    if not with_tables:
        for table in tables:
            parameters[f"{_logical(table)}StreamArn"] = {
                "Type": "String",
                "Description": f"LatestStreamArn of {table} (NEW_AND_OLD_IMAGES)",
            }
    return parameters


def _policy(config: RunnerConfig, region: str) -> dict[str, Any]:
    tables = config.tables
    suffix = config.replication.tombstone_suffix
    regions = [r.name for r in config.regions]  # targets and the source (self-repair)
    streams = [
        {"Fn::Sub": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{t}/stream/*"}
        for t in tables
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadSourceStreams",
                "Effect": "Allow",
                "Resource": streams,
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
            },
            {
                "Sid": "ReadRememberedDeletes",
                "Effect": "Allow",
                "Action": ["dynamodb:BatchGetItem"],
                "Resource": [_table_arn(region, f"{t}{suffix}") for t in tables],
            },
            {
                "Sid": "WriteReplicas",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:ConditionCheckItem",
                ],
                "Resource": [_table_arn(r, t) for r in regions for t in tables],
            },
            {
                "Sid": "RememberDeletes",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:ConditionCheckItem"],
                "Resource": [_table_arn(r, f"{t}{suffix}") for r in regions for t in tables],
            },
            {
                "Sid": "OnFailureDestination",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [{"Fn::GetAtt": ["ReplicatorFailures", "Arn"]}],
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [
                    {
                        "Fn::Sub": f"arn:{PARTITION}:logs:{region}:{ACCOUNT}:log-group:"
                        "/aws/lambda/dynamodb-replicator-*"
                    }
                ],
            },
        ],
    }


def _function(
    config: RunnerConfig, region: str, name: str, targets: Sequence[str]
) -> dict[str, Any]:
    environment = {
        "REPLICATOR_SOURCE_REGION": region,
        "REPLICATOR_REGIONS": ",".join(r.name for r in config.regions),
        "REPLICATOR_MISSING_TIMESTAMP": config.replication.missing_timestamp.value,
        "REPLICATOR_TOMBSTONE_SUFFIX": config.replication.tombstone_suffix,
    }
    if targets:
        environment["REPLICATOR_TARGET_REGIONS"] = ",".join(targets)
    return {
        "Type": "AWS::Lambda::Function",
        "DependsOn": [f"{_logical(name)}Logs"],
        "Properties": {
            "FunctionName": name,
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


def _stream_arn(table: str, with_tables: bool) -> Any:
    if with_tables:
        return {"Fn::GetAtt": [f"{_logical(table)}Table", "StreamArn"]}
    return {"Ref": f"{_logical(table)}StreamArn"}


def _tables(keys: Mapping[str, TableKeys], suffix: str) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for table, shape in keys.items():
        schema = [{"AttributeName": n, "KeyType": k} for n, k, _ in shape.keys]
        definitions = [{"AttributeName": n, "AttributeType": t} for n, _, t in shape.keys]
        resources[f"{_logical(table)}Table"] = {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": table,
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": schema,
                "AttributeDefinitions": definitions,
                "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            },
        }
        resources[f"{_logical(table)}Tombstones"] = {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": f"{table}{suffix}",
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": schema,
                "AttributeDefinitions": definitions,
                "TimeToLiveSpecification": {"AttributeName": "__expiresAt", "Enabled": True},
            },
        }
    return resources


def build_template(config: RunnerConfig, options: TemplateOptions) -> dict[str, Any]:
    """The CloudFormation template (a dict) for the source region ``options.region``."""
    region = options.region
    with_tables = options.with_tables is not None
    targets = [r.name for r in config.regions if r.name != region]
    groups = [[t] for t in targets] if options.per_target else [[]]
    resources: dict[str, Any] = {
        "ReplicatorFailures": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600},
        },
        "ReplicatorRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                        }
                    ],
                },
                "Policies": [
                    {"PolicyName": "replicate", "PolicyDocument": _policy(config, region)}
                ],
            },
        },
    }
    if options.with_tables is not None:
        resources |= _tables(options.with_tables, config.replication.tombstone_suffix)
    for group in groups:
        name = "dynamodb-replicator-" + region + (f"-to-{group[0]}" if group else "")
        logical = _logical(name)
        resources[f"{logical}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{name}", "RetentionInDays": 30},
        }
        resources[logical] = _function(config, region, name, group)
        for table in config.tables:
            resources[f"{logical}{_logical(table)}Mapping"] = {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "FunctionName": {"Ref": logical},
                    "EventSourceArn": _stream_arn(table, with_tables),
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": {"Ref": "BatchSize"},
                    "ParallelizationFactor": {"Ref": "ParallelizationFactor"},
                    "MaximumRetryAttempts": {"Ref": "MaximumRetryAttempts"},
                    "MaximumRecordAgeInSeconds": {"Ref": "MaximumRecordAgeInSeconds"},
                    "BisectBatchOnFunctionError": True,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "DestinationConfig": {
                        "OnFailure": {"Destination": {"Fn::GetAtt": ["ReplicatorFailures", "Arn"]}}
                    },
                },
            }
        resources[f"{logical}IteratorAge"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": f"{name} falls behind its streams",
                "Namespace": "AWS/Lambda",
                "MetricName": "IteratorAge",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": logical}}],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 5,
                "Threshold": {"Ref": "IteratorAgeAlarmMilliseconds"},
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"dynamodb-replicator: replicate {', '.join(config.tables)} from {region} "
        f"to {', '.join(targets)}",
        "Parameters": _parameters(config.tables, with_tables),
        "Resources": resources,
        "Outputs": {"FailureQueueUrl": {"Value": {"Ref": "ReplicatorFailures"}}},
    }


class _NoAliases(yaml.SafeDumper):
    """CloudFormation rejects YAML anchors and aliases: write repeated values out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(template: Mapping[str, Any]) -> str:
    return yaml.dump(dict(template), Dumper=_NoAliases, sort_keys=False, width=100)
