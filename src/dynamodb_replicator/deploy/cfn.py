"""Names and references the parts of the CloudFormation template share. Pure."""

from __future__ import annotations

import re

__all__ = ["ACCOUNT", "FAILURE_STORE", "PARTITION", "logical_id", "table_arn"]

PARTITION = "${AWS::Partition}"
ACCOUNT = "${AWS::AccountId}"
# Logical ID of the on-failure S3 bucket (not the old SQS queue's ID: a resource cannot
# change type in place on a stack update).
FAILURE_STORE = "ReplicatorFailureStore"


def logical_id(name: str) -> str:
    """A logical ID part from a table or region name: ``eu-west-1`` -> ``EuWest1``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def table_arn(region: str, table: str) -> dict[str, str]:
    """A table's ARN in this stack's partition and account."""
    return {"Fn::Sub": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{table}"}
