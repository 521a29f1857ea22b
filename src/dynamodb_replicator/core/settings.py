"""Replication settings shared by the Lambda handler and the runner, and the Lambda's
environment variables. Pure: reads only the mapping it is given."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion
from dynamodb_replicator.core.replicator import MissingTimestamp

__all__ = [
    "ConflictLogSettings",
    "LambdaSettings",
    "ReplicationSettings",
    "load_policy",
    "settings_from_env",
]


@dataclass(frozen=True, slots=True)
class ConflictLogSettings:
    """Where conflicts go: ``-`` (standard output), a file path (JSON lines appended), or
    ``off``; ``sample_rate`` keeps that fraction of them (metrics still count all);
    ``include_items`` adds both items' attribute values (off: keys and versions only)."""

    destination: str = "-"
    sample_rate: float = 1.0
    include_items: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigError(f"conflict sample rate must be in [0, 1], got {self.sample_rate}")
        if not self.destination:
            raise ConfigError("conflict log destination is empty: use -, off or a file path")


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    policy: ConflictPolicy = field(default_factory=LastWriterWins)
    fields: SystemAttributes = field(default_factory=SystemAttributes)
    missing_timestamp: MissingTimestamp = MissingTimestamp.FAIL
    tombstone_suffix: str = ".__tombstones"
    tombstone_ttl_seconds: int = 2 * 24 * 3600
    max_workers: int = 64  # writes in flight per target: covers a 100 ms round trip (make bench)
    conflict_log: ConflictLogSettings = field(default_factory=ConflictLogSettings)


@dataclass(frozen=True, slots=True)
class LambdaSettings:
    source: str
    regions: tuple[str, ...]  # every region the function writes to, the source included
    endpoints: Mapping[str, str]
    replication: ReplicationSettings
    metrics_namespace: str | None = "DynamoDBReplicator"  # None: no EMF metrics


def load_policy(spec: str, fields: SystemAttributes) -> ConflictPolicy:
    """``last-writer-wins``, ``preferred-region:NAME`` or ``package.module:callable``."""
    if spec in ("", "last-writer-wins"):
        return LastWriterWins(fields)
    if spec.startswith("preferred-region:"):
        return PreferredRegion(spec.split(":", 1)[1], fields)
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ConfigError(f"unknown conflict policy {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load conflict policy {spec!r}: {exc}") from exc
    policy = factory(fields)
    if not hasattr(policy, "order_key") or not hasattr(policy, "stored_is_older"):
        raise ConfigError(f"{spec!r} did not return a ConflictPolicy")
    return policy  # type: ignore[no-any-return]


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def _conflict_log(env: Mapping[str, str]) -> ConflictLogSettings:
    destination = env.get("REPLICATOR_CONFLICT_LOG", "stdout").strip()
    if destination not in ("stdout", "off"):
        raise ConfigError(f"REPLICATOR_CONFLICT_LOG must be stdout or off, got {destination!r}")
    return ConflictLogSettings(
        "-" if destination == "stdout" else "off",
        _fraction(env, "REPLICATOR_CONFLICT_SAMPLE_RATE", 1.0),
        _flag(env, "REPLICATOR_CONFLICT_LOG_ITEMS"),
    )


def _endpoints(raw: str) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        region, sep, url = part.partition("=")
        if not sep or not region or not url:
            raise ConfigError(f"REPLICATOR_ENDPOINT_URLS: expected region=url, got {part!r}")
        endpoints[region.strip()] = url.strip()
    return endpoints


def settings_from_env(env: Mapping[str, str]) -> LambdaSettings:
    """Read the Lambda function's configuration (see the README's table)."""
    source = env.get("REPLICATOR_SOURCE_REGION") or env.get("AWS_REGION", "")
    if not source:
        raise ConfigError("set REPLICATOR_SOURCE_REGION (or AWS_REGION)")
    regions = [r.strip() for r in env.get("REPLICATOR_REGIONS", "").split(",") if r.strip()]
    if not [r for r in regions if r != source]:
        raise ConfigError("REPLICATOR_REGIONS must list the regions to replicate to")
    if len(set(regions)) != len(regions):
        raise ConfigError(f"REPLICATOR_REGIONS lists a region twice: {regions}")
    targets = [r.strip() for r in env.get("REPLICATOR_TARGET_REGIONS", "").split(",") if r.strip()]
    unknown = set(targets) - set(regions)
    if unknown:
        raise ConfigError(f"REPLICATOR_TARGET_REGIONS not in REPLICATOR_REGIONS: {sorted(unknown)}")
    chosen = [r for r in regions if r != source and (not targets or r in targets)]
    fields = SystemAttributes()
    mode = env.get("REPLICATOR_MISSING_TIMESTAMP", "fail")
    try:
        missing = MissingTimestamp(mode)
    except ValueError:
        raise ConfigError(
            f"REPLICATOR_MISSING_TIMESTAMP must be fail or skip, got {mode!r}"
        ) from None
    replication = ReplicationSettings(
        policy=load_policy(env.get("REPLICATOR_POLICY", ""), fields),
        fields=fields,
        missing_timestamp=missing,
        tombstone_suffix=env.get("REPLICATOR_TOMBSTONE_SUFFIX", ".__tombstones"),
        tombstone_ttl_seconds=_integer(env, "REPLICATOR_TOMBSTONE_TTL_SECONDS", 2 * 24 * 3600),
        max_workers=_integer(env, "REPLICATOR_MAX_WORKERS", 64),
        conflict_log=_conflict_log(env),
    )
    namespace = env.get("REPLICATOR_METRICS_NAMESPACE", "DynamoDBReplicator").strip()
    return LambdaSettings(
        source=source,
        regions=(source, *chosen),
        endpoints=_endpoints(env.get("REPLICATOR_ENDPOINT_URLS", "")),
        replication=replication,
        metrics_namespace=None if namespace in ("", "off") else namespace,
    )
