"""The tombstone table of a replicated table: where a region remembers deletes.

It sits beside the application's table (``<table>.__tombstones`` by default), so
applications never see tombstones. It has the same key schema; each item holds the
deleted version and expires by TTL after the stream retention window plus a margin.
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.tables import (
    describe_table,
    enable_ttl,
    require_table,
    wait_until_exists,
)
from dynamodb_replicator.core.defaults import TOMBSTONE_SUFFIX as DEFAULT_SUFFIX
from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.errors import ResourceInUseError
from dynamodb_replicator.core.model import SystemAttributes

__all__ = ["DEFAULT_SUFFIX", "ensure_tombstone_table"]


def ensure_tombstone_table(
    client: Any,
    table: str,
    *,
    region: str,
    suffix: str = DEFAULT_SUFFIX,
    fields: SystemAttributes | None = None,
) -> str:
    """Make sure the tombstone table of ``table`` exists, is ACTIVE and has TTL on.

    Idempotent, and safe to retry after any failure half-way (a table created by a run
    that then failed still gets its TTL)."""
    fields = fields or SystemAttributes()
    name = tombstone_table(table, suffix)
    if describe_table(client, name, region) is None:
        source = require_table(client, table, region)
        key_names = {k["AttributeName"] for k in source["KeySchema"]}
        definitions = [d for d in source["AttributeDefinitions"] if d["AttributeName"] in key_names]
        try:
            with translated(region, f"CreateTable {name}"):
                client.create_table(
                    TableName=name,
                    KeySchema=source["KeySchema"],
                    AttributeDefinitions=definitions,
                    BillingMode="PAY_PER_REQUEST",
                )
        except ResourceInUseError:
            pass  # created concurrently: fine
    wait_until_exists(client, name, region)
    enable_ttl(client, name, region, fields.expires_at)
    return name
