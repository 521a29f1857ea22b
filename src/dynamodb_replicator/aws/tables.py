"""DescribeTable with the two answers callers need: the table, or that it is missing."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.errors import ConfigError

__all__ = ["describe_table", "require_table"]


def describe_table(client: Any, table: str, region: str) -> dict[str, Any] | None:
    """The table's description, or None when it does not exist."""
    try:
        return dict(client.describe_table(TableName=table)["Table"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise translate(exc, region, f"DescribeTable {table}") from exc
    except BotoCoreError as exc:
        raise translate(exc, region, f"DescribeTable {table}") from exc


def require_table(client: Any, table: str, region: str) -> dict[str, Any]:
    """The table's description; a ConfigError saying so when it is missing."""
    described = describe_table(client, table, region)
    if described is None:
        raise ConfigError(f"table {table} does not exist in {region}")
    return described
