"""DescribeTable with the two answers callers need: the table, or that it is missing."""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.core.errors import ConfigError, NotFoundError

__all__ = ["describe_table", "enable_ttl", "require_table", "wait_until_exists"]


def describe_table(client: Any, table: str, region: str) -> dict[str, Any] | None:
    """The table's description, or None when it does not exist."""
    try:
        with translated(region, f"DescribeTable {table}"):
            return dict(client.describe_table(TableName=table)["Table"])
    except NotFoundError:
        return None


def require_table(client: Any, table: str, region: str) -> dict[str, Any]:
    """The table's description; a ConfigError saying so when it is missing."""
    described = describe_table(client, table, region)
    if described is None:
        raise ConfigError(f"table {table} does not exist in {region}")
    return described


def wait_until_exists(client: Any, table: str, region: str, *, delay: int = 1) -> None:
    """Wait until the table is ACTIVE (up to ten minutes); errors come out translated."""
    with translated(region, f"waiting for table {table}"):
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": delay, "MaxAttempts": 600 // delay}
        )


def enable_ttl(client: Any, table: str, region: str, attribute: str) -> None:
    """Turn TTL on for ``attribute`` unless it is on already (idempotent)."""
    with translated(region, f"enabling TTL on {table}"):
        ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            return
        client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
