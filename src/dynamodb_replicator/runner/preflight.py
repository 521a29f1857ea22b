"""Check a runner configuration against the regions before replicating anything.

Every problem is a ConfigError that says what to fix: an unreachable endpoint or rejected
credentials, a table missing in a region, key schemas that differ, a stream that is off or
not NEW_AND_OLD_IMAGES. The state and tombstone tables are created when missing.
"""

from __future__ import annotations

import functools
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import ensure_state_table
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.errors import ConfigError, RetryableTargetError, TargetError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["key_schema", "preflight"]


def key_schema(description: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(name, HASH|RANGE, S|N|B) for each key attribute."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    return tuple(
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in description["KeySchema"]
    )


def _where(spec: RegionSpec) -> str:
    return f"{spec.name} ({spec.endpoint_url or 'AWS'})"


def _check_region(spec: RegionSpec, config: RunnerConfig) -> dict[str, Any]:
    client = make_client("dynamodb", spec)
    streams = StreamClient(spec.name, client, make_client("dynamodbstreams", spec))
    schemas = {}
    for table in config.tables:
        schemas[table] = key_schema(require_table(client, table, spec.name))
        streams.stream_arn(table)
        ensure_tombstone_table(
            client,
            table,
            region=spec.name,
            suffix=config.replication.tombstone_suffix,
            fields=config.replication.fields,
        )
    ensure_state_table(client, config.state_table, spec.name)
    return schemas


def preflight(config: RunnerConfig) -> None:
    """Raise ConfigError on the first problem found; create missing bookkeeping tables."""
    schemas: dict[str, dict[str, Any]] = {}
    for spec in config.regions:
        try:
            # Transient errors (throttling, a dropped connection) are retried with backoff;
            # only what persists is reported.
            schemas[spec.name] = call_with_retries(
                functools.partial(_check_region, spec, config),
                Backoff(attempts=20, base=0.05, cap=0.5),
            )
        except RetryableTargetError as exc:
            raise ConfigError(f"cannot reach {_where(spec)}: {exc}") from exc
        except TargetError as exc:
            raise ConfigError(f"{_where(spec)}: {exc}") from exc
    for table in config.tables:
        seen = {region: found[table] for region, found in schemas.items()}
        if len(set(seen.values())) > 1:
            detail = "; ".join(f"{region}: {schema}" for region, schema in seen.items())
            raise ConfigError(f"table {table} has different key schemas: {detail}")
