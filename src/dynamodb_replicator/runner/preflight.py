"""Check a runner configuration against the regions before replicating anything.

Every problem found is reported at once, one line each, in one ConfigError that says what
to fix: rejected credentials, a region's role that cannot be assumed (the line names the
role and the region), a table missing in a region, key schemas that differ, a
stream that is off or not NEW_AND_OLD_IMAGES. Only once every check passed are the state
and tombstone tables created where missing: a failing preflight creates nothing. A region
that cannot be reached
(throttled, 5xx, connection refused, timeouts) is no configuration problem: it is reported
and checked again later (``check_region``), while the runner replicates among the others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import ensure_state_table
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.errors import (
    AssumeRoleError,
    ConfigError,
    ReplicatorError,
    RetryableTargetError,
)
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.reachability import TRANSIENT

__all__ = ["Checked", "Checks", "Schemas", "check_region", "key_schema", "preflight"]


def key_schema(description: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """(name, HASH|RANGE, S|N|B) for each key attribute."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    return tuple(
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in description["KeySchema"]
    )


def _where(spec: RegionSpec) -> str:
    return f"{spec.name} ({spec.endpoint_url or 'AWS'})"


Schemas = dict[str, tuple[tuple[str, str, str], ...]]  # table -> key schema


@dataclass(frozen=True, slots=True)
class Checked:
    """What preflight found: the key schemas of the regions it reached, and why it could
    not reach the others (region -> reason)."""

    schemas: Mapping[str, Schemas]
    unreachable: Mapping[str, str] = field(default_factory=dict)


def _check_table(
    client: Any, streams: StreamClient, spec: RegionSpec, table: str, schemas: Schemas
) -> None:
    """Read-only: the table exists (its key schema goes to ``schemas`` at once, so that
    schemas are compared even when the stream is wrong too) and has the right stream."""
    physical = streams.names.physical(table, spec.name)
    schemas[table] = key_schema(require_table(client, physical, spec.name))
    streams.stream_arn(table)


def _create_bookkeeping(spec: RegionSpec, config: RunnerConfig, backoff: Backoff) -> None:
    """Create the tombstone tables and the state table of ``spec`` where missing."""
    client = make_client("dynamodb", spec)
    for table in config.tables:
        physical = config.replication.names.physical(table, spec.name)
        create = functools.partial(
            ensure_tombstone_table,
            client,
            physical,
            region=spec.name,
            suffix=config.replication.tombstone_suffix,
            fields=config.replication.fields,
        )
        call_with_retries(create, backoff)
    call_with_retries(lambda: ensure_state_table(client, config.state_table, spec.name), backoff)


def _check_region(
    spec: RegionSpec, config: RunnerConfig, backoff: Backoff
) -> tuple[Schemas, list[str]]:
    """The key schema of each table in ``spec``, and a problem line per table that is not
    usable. Reads only. Raises RetryableTargetError when the region cannot be reached."""
    client = make_client("dynamodb", spec)
    streams = StreamClient(
        spec.name, client, make_client("dynamodbstreams", spec), config.replication.names
    )
    schemas: Schemas = {}
    problems: list[str] = []
    for table in config.tables:
        check = functools.partial(_check_table, client, streams, spec, table, schemas)
        try:
            call_with_retries(check, backoff)
        except RetryableTargetError:
            raise
        except AssumeRoleError as exc:
            problems.append(str(exc))  # names the role and the region already
            break  # every other check of this region would say the same
        except ReplicatorError as exc:
            problems.append(f"{_where(spec)}: {exc}")
            if isinstance(exc, ConfigError) and "credentials" in str(exc):
                break  # every other check of this region would say the same
    return schemas, problems


def check_region(
    spec: RegionSpec,
    config: RunnerConfig,
    known: Mapping[str, Schemas],
    backoff: Backoff | None = None,
) -> Schemas:
    """Check one region (creating its missing bookkeeping tables) against the schemas of
    the regions checked before. Raises RetryableTargetError when the region cannot be
    reached (after ``backoff``'s attempts; default three, quick), one ConfigError naming
    every problem for what needs fixing."""
    backoff = backoff or Backoff(attempts=3, base=0.05, cap=0.5)
    schemas, problems = _check_region(spec, config, backoff)
    problems += _compare(config.tables, {**known, spec.name: schemas})
    problems += _residency_keys(config, {spec.name: schemas})
    if problems:
        raise ConfigError("\n".join(problems))
    _create_bookkeeping(spec, config, backoff)
    return schemas


def _compare(tables: Sequence[str], schemas: Mapping[str, Schemas]) -> list[str]:
    problems = []
    for table in tables:
        seen = {region: found[table] for region, found in schemas.items() if table in found}
        if len(set(seen.values())) > 1:
            detail = "; ".join(
                f"{region}: " + ", ".join(" ".join(part) for part in schema)
                for region, schema in seen.items()
            )
            problems.append(f"table {table} has different key schemas: {detail}")
    return problems


def _residency_keys(config: RunnerConfig, schemas: Mapping[str, Schemas]) -> list[str]:
    """A residency rule whose attribute is part of its table's key, one line per table."""
    problems: set[str] = set()
    for found in schemas.values():
        for table, schema in found.items():
            rule = config.replication.residency.rule(table)
            try:
                if rule is not None:
                    rule.check_key(table, [name for name, _, _ in schema])
            except ConfigError as exc:
                problems.add(str(exc))
    return sorted(problems)


def preflight(config: RunnerConfig) -> Checked:
    """Check every region at once; raise one ConfigError naming every problem that needs
    fixing, one line each.

    A region that cannot be reached is not an error: it is reported in the result, and the
    runner replicates among the others until a later check of it succeeds.
    """
    # Transient errors (throttling, a dropped connection) are retried a little; what
    # persists is an outage, checked again later on the runner's schedule.
    backoff = TRANSIENT
    schemas: dict[str, Schemas] = {}
    unreachable: dict[str, str] = {}
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=len(config.regions)) as pool:
        futures = {
            spec: pool.submit(_check_region, spec, config, backoff) for spec in config.regions
        }
        for spec, future in futures.items():
            try:
                schemas[spec.name], found = future.result()
            except RetryableTargetError as exc:
                unreachable[spec.name] = f"cannot reach {_where(spec)}: {exc}"
                continue
            problems += found
    problems += _compare(config.tables, schemas)
    problems += _residency_keys(config, schemas)
    if problems:
        # Alone an outage is no reason to stop; beside what needs fixing it is worth knowing.
        raise ConfigError("\n".join([*problems, *unreachable.values()]))
    _create_everywhere(config, schemas, unreachable, backoff)
    return Checked(schemas, unreachable)


def _create_everywhere(
    config: RunnerConfig,
    schemas: dict[str, Schemas],
    unreachable: dict[str, str],
    backoff: Backoff,
) -> None:
    """The bookkeeping tables of every checked region; a region lost meanwhile is moved
    to ``unreachable`` (the runner checks it again later, creating what is missing)."""
    specs = [spec for spec in config.regions if spec.name in schemas]
    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        futures = {spec: pool.submit(_create_bookkeeping, spec, config, backoff) for spec in specs}
        for spec, future in futures.items():
            try:
                future.result()
            except RetryableTargetError as exc:
                del schemas[spec.name]
                unreachable[spec.name] = f"cannot reach {_where(spec)}: {exc}"


@dataclass(frozen=True, slots=True)
class Checks:
    """The checks the runner makes: of a whole configuration, and of one region again."""

    all: Callable[[RunnerConfig], Checked] = preflight
    region: Callable[[RegionSpec, RunnerConfig, Mapping[str, Schemas]], Schemas] = check_region
