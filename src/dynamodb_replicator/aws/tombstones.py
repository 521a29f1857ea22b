"""The tombstone table of a replicated table: where a region remembers deletes.

It sits beside the application's table (``<table>.__tombstones`` by default), so
applications never see tombstones. It has the same key schema; each item holds the
deleted version and expires by TTL after the stream retention window plus a margin.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.batch import batch_get
from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.aws.tables import (
    describe_table,
    enable_ttl,
    require_table,
    wait_until_exists,
)
from dynamodb_replicator.core.defaults import TOMBSTONE_SUFFIX as DEFAULT_SUFFIX
from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.model import ItemKey, SystemAttributes, Tombstone, Version
from dynamodb_replicator.core.retry import Backoff

__all__ = [
    "DEFAULT_SUFFIX",
    "DynamoTombstoneReader",
    "ensure_tombstone_table",
    "tombstone_from_item",
    "tombstone_table",
]


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
            client.create_table(
                TableName=name,
                KeySchema=source["KeySchema"],
                AttributeDefinitions=definitions,
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # created concurrently: fine
                raise translate(exc, region, f"CreateTable {name}") from exc
        except BotoCoreError as exc:
            raise translate(exc, region, f"CreateTable {name}") from exc
    wait_until_exists(client, name, region)
    enable_ttl(client, name, region, fields.expires_at)
    return name


@dataclass(slots=True)
class DynamoTombstoneReader:
    """Strongly consistent BatchGetItem on one region's tombstone tables."""

    client: Any
    region: str
    fields: SystemAttributes
    suffix: str = DEFAULT_SUFFIX
    backoff: Backoff = field(default_factory=Backoff)

    def read(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Tombstone]:
        name = tombstone_table(table, self.suffix)
        ordered = list(keys)
        if not ordered:
            return {}
        items = batch_get(
            self.client,
            name,
            [k.to_attributes() for k in ordered],
            region=self.region,
            backoff=self.backoff,
        )
        names = ordered[0].names()
        tombs = (tombstone_from_item(item, names, self.fields) for item in items)
        return {tomb.key: tomb for tomb in tombs}


def tombstone_from_item(
    item: Mapping[str, Any], key_names: Sequence[str], fields: SystemAttributes
) -> Tombstone:
    """A tombstone table item -> Tombstone."""
    key = ItemKey.from_attributes({n: item[n] for n in key_names})
    version = Version.of(item[fields.timestamp]["N"], item[fields.origin]["S"])
    return Tombstone(key, version, item[fields.deleted_in]["S"])
