"""Default settings, in one place. Pure constants: the runner's config, the Lambda's
environment, the CLI and the adapters all start from these (README: the settings tables).
"""

from __future__ import annotations

__all__ = [
    "IDLE_POLL_MAX_MS",
    "LEASE_MARGIN_FRACTION",
    "LEASE_TIMEOUT_SECONDS",
    "MAX_WORKERS",
    "METRICS_NAMESPACE",
    "PAGE_LIMIT",
    "PARK_AFTER_SECONDS",
    "ROLE_SESSION_NAME",
    "STATE_TABLE",
    "STREAM_RETENTION_SECONDS",
    "TOMBSTONE_SUFFIX",
    "TOMBSTONE_TTL_SECONDS",
    "tombstone_table",
]

HOUR = 3600

TOMBSTONE_SUFFIX = ".__tombstones"
"""A table's tombstone table is named ``<table><suffix>``, beside it."""

STREAM_RETENTION_SECONDS = 24 * HOUR
"""How long DynamoDB Streams keeps a record: no record older than this can arrive."""

TOMBSTONE_TTL_SECONDS = STREAM_RETENTION_SECONDS + 24 * HOUR
"""How long a remembered delete is kept: the stream retention plus a day of margin."""

STATE_TABLE = "dynamodb-replicator-state"
"""The runner's table of checkpoints, leases and shard reports, one per region."""

MAX_WORKERS = 64
"""Writes in flight per target region: enough to cover a 100 ms round trip (make bench)."""

LEASE_TIMEOUT_SECONDS = 30.0
"""A runner's shard lease expires this long after its last renewal."""

LEASE_MARGIN_FRACTION = 0.25
"""No write of a shard starts later than this fraction of the lease before its expiry (as
the holder's clock sees it): room for clock skew between workers and a request in flight."""

IDLE_POLL_MAX_MS = 250
"""The longest pause between reads of an idle shard."""

PAGE_LIMIT = 1000
"""Records asked for per GetRecords call (the API's maximum)."""

PARK_AFTER_SECONDS = 300.0
"""A record that keeps failing the same way by itself (malformed, no ``__timestamp`` under
``missing_timestamp = "fail"``, an item a region refuses) for this long is parked, and its
shard moves on. A region that is down is never a reason to park."""

METRICS_NAMESPACE = "DynamoDBReplicator"
"""The Lambda's CloudWatch (EMF) metrics namespace."""

ROLE_SESSION_NAME = "dynamodb-replicator"
"""The session name of an assumed role (a region in another account), as CloudTrail shows it."""


def tombstone_table(table: str, suffix: str = TOMBSTONE_SUFFIX) -> str:
    """The name of ``table``'s tombstone table."""
    return f"{table}{suffix}"
