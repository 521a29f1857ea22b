"""Default settings, in one place. Pure constants: the runner's config, the Lambda's
environment, the CLI and the adapters all start from these (docs/reference/: the settings tables).
"""

from __future__ import annotations

__all__ = [
    "IDLE_POLL_MAX_MS",
    "LEASE_MARGIN_FRACTION",
    "LEASE_TIMEOUT_SECONDS",
    "MAX_WORKERS",
    "METRICS_NAMESPACE",
    "PAGES_IN_FLIGHT",
    "PAGE_LIMIT",
    "PARK_AFTER_SECONDS",
    "READ_CADENCE",
    "REQUEST_CONNECT_SHARE",
    "REQUEST_SHARE_OF_MARGIN",
    "REQUEST_TIMEOUT_SECONDS",
    "ROLE_SESSION_NAME",
    "STATE_TABLE",
    "STREAM_RETENTION_SECONDS",
    "TOMBSTONE_SUFFIX",
    "TOMBSTONE_TTL_SECONDS",
    "TOOL_REQUEST_TIMEOUT_SECONDS",
    "lease_margin",
    "request_lifetime",
    "request_timeout",
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

PAGES_IN_FLIGHT = 5
"""Pages of one shard cursor applied at once (runner/pipeline.py): the oldest settles while
the later ones read and write. A page that shares no key with a page before it still
writing writes beside it; one that does waits for it (writes of one key in stream order).
Five keep a hot shard caught up at a 250 ms round trip (make bench: the hot shard)."""

READ_CADENCE = 0.7
"""Caught up, a shard worker reads its next page this fraction of a page's round trip
(the longer of its reads and its writes) after its last read: often enough that a page in
flight always has a successor close behind it, seldom enough that pages are not read
nearly empty (each read is a GetRecords call)."""

LEASE_TIMEOUT_SECONDS = 30.0
"""A runner's shard lease expires this long after its last renewal."""

LEASE_MARGIN_FRACTION = 0.25
"""No write of a shard starts later than this fraction of the lease before its expiry (as
the holder's clock sees it): room for a request in flight (``REQUEST_TIMEOUT_SECONDS``) and,
what is left, for clock skew between workers."""

REQUEST_TIMEOUT_SECONDS = 5.0
"""The longest a single store request may stay out, connect and read together (botocore
makes one attempt per call: retries are ours, each a new request checked against the
deadline). A lease's margin must be longer (``lease_margin``): the difference is the clock
skew between workers the lease tolerates."""

TOOL_REQUEST_TIMEOUT_SECONDS = 22.0
"""The request timeout of calls no lease or invocation deadline bounds (the CLI's checks,
copies and reports): long enough for a busy server, one attempt each like every call."""

REQUEST_CONNECT_SHARE = 0.1
"""The share of the request timeout given to connecting; the rest is the read timeout."""

REQUEST_SHARE_OF_MARGIN = 0.8
"""A request timeout not set in the config is at most this share of the lease margin, so
that a short lease (tests use 3 to 5 s) still fences: the rest is the tolerated skew."""

IDLE_POLL_MAX_MS = 250
"""The longest pause between reads of an idle shard."""

PAGE_LIMIT = 1000
"""Records asked for per GetRecords call (the API's maximum)."""

PAGE_CALM_PAGES = 4
"""Pages in time in a row before a shard's page size, halved after a page ran out of time,
doubles back toward the page limit (runner/page_size.py)."""

PARK_AFTER_SECONDS = 300.0
"""A record that keeps failing the same way by itself (malformed, no ``__timestamp`` under
``missing_timestamp = "fail"``, an item a region refuses) for this long is parked, and its
shard moves on. A region that is down is never a reason to park."""

METRICS_NAMESPACE = "DynamoDBReplicator"
"""The Lambda's CloudWatch (EMF) metrics namespace."""

ROLE_SESSION_NAME = "dynamodb-replicator"
"""The session name of an assumed role (a region in another account), as CloudTrail shows it."""


def lease_margin(lease_seconds: float) -> float:
    """No write of a shard starts later than this before its lease's expiry (seconds)."""
    return lease_seconds * LEASE_MARGIN_FRACTION


def request_timeout(lease_seconds: float) -> float:
    """The request timeout a lease of ``lease_seconds`` gets when the config sets none."""
    return min(REQUEST_TIMEOUT_SECONDS, lease_margin(lease_seconds) * REQUEST_SHARE_OF_MARGIN)


def request_lifetime(request_timeout: float, *, any_role: bool) -> float:
    """The longest one write or store call stays out after its deadline check (seconds):
    its request, and where a region has a role, the STS request a credentials refresh
    adds inside the call. The runner's lease margin and the Lambda's deadline both use it."""
    return request_timeout * (2 if any_role else 1)


def tombstone_table(table: str, suffix: str = TOMBSTONE_SUFFIX) -> str:
    """The name of ``table``'s tombstone table."""
    return f"{table}{suffix}"
