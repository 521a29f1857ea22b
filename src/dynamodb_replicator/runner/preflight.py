"""Check a runner configuration against the regions before replicating anything.

Every problem found is reported at once, one line each, in one ConfigError that says what
to fix: an unreachable endpoint or rejected credentials, a table missing in a region, key
schemas that differ, a stream that is off or not NEW_AND_OLD_IMAGES. The state and
tombstone tables are created when missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import ensure_state_table
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.errors import ConfigError, ReplicatorError, RetryableTargetError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["key_schema", "preflight"]

T = TypeVar("T")


def key_schema(description: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(name, HASH|RANGE, S|N|B) for each key attribute."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    return tuple(
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in description["KeySchema"]
    )


def _where(spec: RegionSpec) -> str:
    return f"{spec.name} ({spec.endpoint_url or 'AWS'})"


def _check_table(
    client: Any, streams: StreamClient, spec: RegionSpec, table: str, config: RunnerConfig
) -> tuple[tuple[str, str, str], ...]:
    schema = key_schema(require_table(client, table, spec.name))
    streams.stream_arn(table)
    ensure_tombstone_table(
        client,
        table,
        region=spec.name,
        suffix=config.replication.tombstone_suffix,
        fields=config.replication.fields,
    )
    return schema


def _retried(call: Callable[[], T]) -> T:
    # Transient errors (throttling, a dropped connection) are retried with backoff; only
    # what persists is reported.
    return call_with_retries(call, Backoff(attempts=20, base=0.05, cap=0.5))


def _check_region(
    spec: RegionSpec, config: RunnerConfig, problems: list[str]
) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """The key schema of each table found usable in ``spec``; a problem per table that is
    not. An unreachable region is one problem (its other checks are skipped)."""
    client = make_client("dynamodb", spec)
    streams = StreamClient(spec.name, client, make_client("dynamodbstreams", spec))
    schemas = {}
    checks: list[tuple[str | None, Callable[[], Any]]] = [
        (table, functools.partial(_check_table, client, streams, spec, table, config))
        for table in config.tables
    ]
    checks.append((None, lambda: ensure_state_table(client, config.state_table, spec.name)))
    for table, check in checks:
        try:
            found = _retried(check)
        except RetryableTargetError as exc:
            problems.append(f"cannot reach {_where(spec)}: {exc}")
            break
        except ReplicatorError as exc:
            problems.append(f"{_where(spec)}: {exc}")
            if isinstance(exc, ConfigError) and "credentials" in str(exc):
                break  # every other check of this region would say the same
        else:
            if table is not None:
                schemas[table] = found
    return schemas


def preflight(config: RunnerConfig) -> None:
    """Raise one ConfigError naming every problem found, one line each; create missing
    bookkeeping tables."""
    problems: list[str] = []
    schemas = {spec.name: _check_region(spec, config, problems) for spec in config.regions}
    for table in config.tables:
        seen = {region: found[table] for region, found in schemas.items() if table in found}
        if len(set(seen.values())) > 1:
            detail = "; ".join(
                f"{region}: " + ", ".join(" ".join(part) for part in schema)
                for region, schema in seen.items()
            )
            problems.append(f"table {table} has different key schemas: {detail}")
    if problems:
        raise ConfigError("\n".join(problems))
