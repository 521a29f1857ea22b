"""Copy a table's shape to another region: keys, indexes, billing, TTL, a stream."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.tables import describe_table, enable_ttl, wait_until_exists
from dynamodb_replicator.core.errors import ConfigError, ResourceInUseError

__all__ = ["TableShape", "create_like", "describe_shape"]


def _index(raw: dict[str, Any], provisioned: bool) -> dict[str, Any]:
    index = {k: raw[k] for k in ("IndexName", "KeySchema", "Projection")}
    throughput = raw.get("ProvisionedThroughput") or {}
    if provisioned and throughput:
        index["ProvisionedThroughput"] = {
            "ReadCapacityUnits": throughput["ReadCapacityUnits"],
            "WriteCapacityUnits": throughput["WriteCapacityUnits"],
        }
    return index


@dataclass(frozen=True, slots=True)
class TableShape:
    """What CreateTable needs to rebuild a table, and what must match in an existing one."""

    name: str
    key_schema: tuple[tuple[str, str], ...]
    attributes: tuple[tuple[str, str], ...]
    create_arguments: dict[str, Any]
    ttl_attribute: str | None

    def signature(self) -> tuple[Any, ...]:
        """Keys, key types and indexes: a table with another signature is another table."""
        args = self.create_arguments
        indexes = tuple(
            sorted(
                (i["IndexName"], repr(i["KeySchema"]), repr(i["Projection"]))
                for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
                for i in args.get(kind, [])
            )
        )
        return self.key_schema, self.attributes, indexes

    def named(self, name: str) -> TableShape:
        """The same shape under another table name (the table's name in another region)."""
        arguments = {**self.create_arguments, "TableName": name}
        return dataclasses.replace(self, name=name, create_arguments=arguments)


def describe_shape(client: Any, table: str, region: str) -> TableShape | None:
    """The table's shape, or None when it does not exist."""
    described = describe_table(client, table, region)
    if described is None:
        return None
    with translated(region, f"DescribeTimeToLive {table}"):
        ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    mode = (described.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    provisioned = mode == "PROVISIONED"
    args: dict[str, Any] = {
        "TableName": table,
        "KeySchema": described["KeySchema"],
        "AttributeDefinitions": described["AttributeDefinitions"],
        "BillingMode": mode,
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }
    if provisioned:
        throughput = described["ProvisionedThroughput"]
        args["ProvisionedThroughput"] = {
            "ReadCapacityUnits": throughput["ReadCapacityUnits"],
            "WriteCapacityUnits": throughput["WriteCapacityUnits"],
        }
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if described.get(kind):
            args[kind] = [
                _index(i, provisioned and kind.startswith("Global")) for i in described[kind]
            ]
    ttl_on = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return TableShape(
        name=table,
        key_schema=tuple((k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]),
        attributes=tuple(
            sorted(
                (a["AttributeName"], a["AttributeType"]) for a in described["AttributeDefinitions"]
            )
        ),
        create_arguments=args,
        ttl_attribute=ttl.get("AttributeName") if ttl_on else None,
    )


def create_like(client: Any, shape: TableShape, region: str) -> bool:
    """Create the table in ``region`` like ``shape`` and wait until ACTIVE.

    Returns False when it already exists with the same keys and indexes (a resumed run);
    raises ConfigError when it exists with another schema.
    """
    existing = describe_shape(client, shape.name, region)
    if existing is not None and existing.signature() != shape.signature():
        raise ConfigError(
            f"table {shape.name} already exists in {region} with another schema "
            f"(keys/indexes {existing.signature()} != {shape.signature()}); refusing to use it"
        )
    if existing is None:
        try:
            with translated(region, f"CreateTable {shape.name}"):
                client.create_table(**shape.create_arguments)
        except ResourceInUseError:
            pass  # created concurrently: fine
    # Also on a resumed run: the table may have been created by a run that failed here.
    wait_until_exists(client, shape.name, region)
    if shape.ttl_attribute:
        enable_ttl(client, shape.name, region, shape.ttl_attribute)
    return existing is None
