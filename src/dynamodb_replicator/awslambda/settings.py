"""The Lambda function's configuration: its environment variables, read and written.

``settings_from_env`` reads them (the handler); ``replication_environment`` writes the
replication settings back as variables (the template), so that a function deployed from a
config replicates exactly as a runner with the same config. Pure: reads only the mapping it
is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.defaults import METRICS_NAMESPACE
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import SystemAttributes, TableNames
from dynamodb_replicator.core.replicator import MissingTimestamp
from dynamodb_replicator.core.residency import Residency, parse_residency
from dynamodb_replicator.core.roles import ROLE_KEYS, RoleSpec, parse_role
from dynamodb_replicator.core.settings import (
    ConflictLogSettings,
    ReplicationSettings,
    load_policy,
    policy_spec,
)

__all__ = [
    "LambdaSettings",
    "replication_environment",
    "roles_environment",
    "settings_from_env",
]

_DEFAULTS = ReplicationSettings()


@dataclass(frozen=True, slots=True)
class LambdaSettings:
    """What one function replicates, from where to where, and how."""

    source: str
    regions: tuple[str, ...]  # every region the function writes to, the source included
    endpoints: Mapping[str, str]
    replication: ReplicationSettings
    metrics_namespace: str | None = METRICS_NAMESPACE  # None: no EMF metrics
    roles: Mapping[str, RoleSpec] = field(default_factory=dict)  # region -> role to assume

    @property
    def request_lifetime(self) -> float:
        """The longest one write stays out after the deadline check (the runner's rule)."""
        timeout = self.replication.request_timeout_seconds
        return defaults.request_lifetime(timeout, any_role=bool(self.roles))


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


def _table_names(raw: str) -> TableNames:
    """``LOGICAL:REGION=PHYSICAL,...``: the tables' names where they differ."""
    mapping: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        where, sep, physical = part.partition("=")
        logical, colon, region = where.partition(":")
        if not (sep and colon and logical and region and physical):
            raise ConfigError(f"REPLICATOR_TABLE_NAMES: expected table:region=name, got {part!r}")
        mapping.setdefault(logical.strip(), {})[region.strip()] = physical.strip()
    return TableNames.of(mapping)


def _missing_timestamp(env: Mapping[str, str]) -> MissingTimestamp:
    mode = env.get("REPLICATOR_MISSING_TIMESTAMP", "fail")
    try:
        return MissingTimestamp(mode)
    except ValueError:
        raise ConfigError(
            f"REPLICATOR_MISSING_TIMESTAMP must be fail or skip, got {mode!r}"
        ) from None


def _replication(env: Mapping[str, str]) -> ReplicationSettings:
    fields = SystemAttributes()
    return ReplicationSettings(
        policy=load_policy(env.get("REPLICATOR_POLICY", ""), fields),
        fields=fields,
        missing_timestamp=_missing_timestamp(env),
        tombstone_suffix=env.get("REPLICATOR_TOMBSTONE_SUFFIX", _DEFAULTS.tombstone_suffix),
        tombstone_ttl_seconds=_integer(
            env, "REPLICATOR_TOMBSTONE_TTL_SECONDS", _DEFAULTS.tombstone_ttl_seconds
        ),
        max_workers=_integer(env, "REPLICATOR_MAX_WORKERS", _DEFAULTS.max_workers),
        conflict_log=_conflict_log(env),
        names=_table_names(env.get("REPLICATOR_TABLE_NAMES", "")),
        residency=_residency(env),
        request_timeout_seconds=_seconds(env, "REPLICATOR_REQUEST_TIMEOUT_SECONDS"),
    )


def _residency(env: Mapping[str, str]) -> Residency:
    """REPLICATOR_RESIDENCY: JSON, table -> {attribute, scopes, default?} (as in the
    config's ``[residency.TABLE]``)."""
    raw = env.get("REPLICATOR_RESIDENCY", "").strip()
    if not raw:
        return Residency()
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError("REPLICATOR_RESIDENCY must be a JSON object (table -> rule)") from None
    return parse_residency(data, None, _names(env, "REPLICATOR_REGIONS"))


def _seconds(env: Mapping[str, str], name: str) -> float:
    value = _fraction(env, name, _DEFAULTS.request_timeout_seconds)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _names(env: Mapping[str, str], variable: str) -> list[str]:
    return [r.strip() for r in env.get(variable, "").split(",") if r.strip()]


def _regions(env: Mapping[str, str], source: str) -> tuple[str, ...]:
    regions = _names(env, "REPLICATOR_REGIONS")
    if not [r for r in regions if r != source]:
        raise ConfigError("REPLICATOR_REGIONS must list the regions to replicate to")
    if len(set(regions)) != len(regions):
        raise ConfigError(f"REPLICATOR_REGIONS lists a region twice: {regions}")
    targets = _names(env, "REPLICATOR_TARGET_REGIONS")
    unknown = set(targets) - set(regions)
    if unknown:
        raise ConfigError(f"REPLICATOR_TARGET_REGIONS not in REPLICATOR_REGIONS: {sorted(unknown)}")
    return (source, *(r for r in regions if r != source and (not targets or r in targets)))


def _roles(raw: str, regions: Iterable[str]) -> dict[str, RoleSpec]:
    """REPLICATOR_ROLES: a JSON object, region -> {role_arn, external_id?, session_name?}
    (JSON, not ``region=arn,...``: role names and external IDs may hold commas and ``=``)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError("REPLICATOR_ROLES must be a JSON object (region -> role)") from None
    if not isinstance(data, dict):
        raise ConfigError("REPLICATOR_ROLES must be a JSON object (region -> role)")
    roles: dict[str, RoleSpec] = {}
    for region, value in data.items():
        where = f"REPLICATOR_ROLES ({region})"
        if region not in regions:
            raise ConfigError(f"{where}: not in REPLICATOR_REGIONS")
        if not isinstance(value, dict) or set(value) - ROLE_KEYS:
            raise ConfigError(f"{where}: expected an object of {sorted(ROLE_KEYS)}")
        role = parse_role(value, where)
        if role is None:
            raise ConfigError(f"{where}: role_arn is required")
        roles[region] = role
    return roles


def settings_from_env(env: Mapping[str, str]) -> LambdaSettings:
    """Read the Lambda function's configuration (docs/reference/environment.md)."""
    source = env.get("REPLICATOR_SOURCE_REGION") or env.get("AWS_REGION", "")
    if not source:
        raise ConfigError("set REPLICATOR_SOURCE_REGION (or AWS_REGION)")
    namespace = env.get("REPLICATOR_METRICS_NAMESPACE", METRICS_NAMESPACE).strip()
    return LambdaSettings(
        source=source,
        regions=_regions(env, source),
        endpoints=_endpoints(env.get("REPLICATOR_ENDPOINT_URLS", "")),
        replication=_replication(env),
        metrics_namespace=None if namespace in ("", "off") else namespace,
        roles=_roles(env.get("REPLICATOR_ROLES", ""), _names(env, "REPLICATOR_REGIONS")),
    )


def replication_environment(settings: ReplicationSettings) -> dict[str, str]:
    """The variables ``settings_from_env`` reads back as ``settings``.

    A conflict log file cannot outlive a Lambda invocation's sandbox, so a file destination
    becomes ``stdout``: the function's CloudWatch Logs stream.
    """
    log = settings.conflict_log
    names = ",".join(f"{t}:{region}={name}" for t, region, name in settings.names.renamed)
    residency = settings.residency
    return (
        ({"REPLICATOR_TABLE_NAMES": names} if names else {})
        | ({"REPLICATOR_RESIDENCY": residency.to_env()} if residency else {})
    ) | {
        "REPLICATOR_POLICY": policy_spec(settings.policy),
        "REPLICATOR_MISSING_TIMESTAMP": settings.missing_timestamp.value,
        "REPLICATOR_TOMBSTONE_SUFFIX": settings.tombstone_suffix,
        "REPLICATOR_TOMBSTONE_TTL_SECONDS": str(settings.tombstone_ttl_seconds),
        "REPLICATOR_MAX_WORKERS": str(settings.max_workers),
        "REPLICATOR_CONFLICT_LOG": "off" if log.destination == "off" else "stdout",
        "REPLICATOR_CONFLICT_SAMPLE_RATE": repr(log.sample_rate),
        "REPLICATOR_CONFLICT_LOG_ITEMS": "true" if log.include_items else "false",
    }


def roles_environment(roles: Mapping[str, RoleSpec]) -> dict[str, str]:
    """REPLICATOR_ROLES for ``roles`` (region -> role; none: no variable), as
    ``settings_from_env`` reads it back."""
    data: dict[str, dict[str, str]] = {}
    for region, role in roles.items():
        data[region] = {"role_arn": role.role_arn, "session_name": role.session_name}
        if role.external_id is not None:
            data[region]["external_id"] = role.external_id
    return {"REPLICATOR_ROLES": json.dumps(data, sort_keys=True)} if data else {}
