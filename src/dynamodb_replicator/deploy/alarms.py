"""The failure store and the alarms of one source region's stack. Pure: builds dicts.

The failure store is an S3 bucket: as a stream event source mapping's on-failure
destination, Lambda writes to it the whole invocation (the discarded batch's records), not
only the metadata an SQS or SNS destination gets, which points at records the stream trims
after 24 hours. Every alarm notifies the ``AlarmTopicArn`` parameter's SNS topic, if set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamodb_replicator.deploy.cfn import FAILURE_STORE, logical_id

__all__ = ["alarm_conditions", "failure_store", "function_alarms", "store_alarm"]

_HAS_TOPIC = "HasAlarmTopic"
_STORE_METRICS = "EntireBucket"  # the bucket's request-metrics filter


def failure_store() -> dict[str, Any]:
    """The private, encrypted bucket discarded batches go to; objects expire."""
    return {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",  # failed batches outlive the stack: they await a redrive
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-failed-batches",
                        "Status": "Enabled",
                        "ExpirationInDays": {"Ref": "FailureRetentionDays"},
                    }
                ]
            },
            "MetricsConfigurations": [{"Id": _STORE_METRICS}],
        },
    }


def alarm_conditions() -> dict[str, Any]:
    """The template's conditions the alarms use: whether an SNS topic was given."""
    return {_HAS_TOPIC: {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}}


def _alarm(description: str, metric: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "AlarmDescription": description,
        **metric,
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": {
            "Fn::If": [_HAS_TOPIC, [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        },
    }
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties | overrides}


def store_alarm() -> dict[str, Any]:
    """A batch was discarded into the failure store: it needs a redrive."""
    metric = {
        "Namespace": "AWS/S3",
        "MetricName": "PutRequests",
        "Dimensions": [
            {"Name": "BucketName", "Value": {"Ref": FAILURE_STORE}},
            {"Name": "FilterId", "Value": _STORE_METRICS},
        ],
    }
    return _alarm("a replication batch was discarded into the failure store", metric)


def function_alarms(
    logical: str,
    *,
    source: str,
    tables: Sequence[str],
    targets: Sequence[str],
    namespace: str,
) -> dict[str, dict[str, Any]]:
    """One function's alarms: falling behind, losing a batch, failing writes per target."""
    function = [{"Name": "FunctionName", "Value": {"Ref": logical}}]
    alarms = {
        f"{logical}IteratorAge": _alarm(
            "the function falls behind its streams",
            {"Namespace": "AWS/Lambda", "MetricName": "IteratorAge", "Dimensions": function},
            Statistic="Maximum",
            Period=60,
            EvaluationPeriods=5,
            Threshold={"Ref": "IteratorAgeAlarmMilliseconds"},
        ),
        f"{logical}DeliveryFailures": _alarm(
            "a discarded batch could not be stored: its records are lost to replication",
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "DestinationDeliveryFailures",
                "Dimensions": function,
            },
            Period=60,
        ),
    }
    for table in tables:
        for target in targets:
            dimensions = [
                {"Name": "Table", "Value": table},
                {"Name": "SourceRegion", "Value": source},
                {"Name": "TargetRegion", "Value": target},
            ]
            name = f"{logical}{logical_id(table)}{logical_id(target)}Failed"
            alarms[name] = _alarm(
                f"writes of {table} from {source} to {target} keep failing",
                {"Namespace": namespace, "MetricName": "Failed", "Dimensions": dimensions},
                EvaluationPeriods=3,
                DatapointsToAlarm=3,
            )
    return alarms
