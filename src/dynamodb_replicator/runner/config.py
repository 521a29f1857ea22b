"""The runner's TOML configuration (a contract: see DESIGN.md section 4).

    tables = ["Orders"]
    [[regions]]
    name = "eu-west-1"
    endpoint_url = "http://127.0.0.1:8000"   # optional: absent means real AWS
    [[regions]]
    name = "ap-southeast-1"
    role_arn = "arn:aws:iam::111122223333:role/replicator"   # optional: another account
    external_id = "..."                                        # optional, with role_arn
    [table_names.Orders]                     # optional: Orders's name where it differs
    eu-west-1 = "EuStack-Orders-1A2B3C"
    [residency.Orders]                       # optional: where Orders's items may live
    attribute = "country"
    scopes = { DE = ["eu-west-1"] }          # value -> regions
    default = ["eu-west-1", "ap-southeast-1"]  # optional: absent means every region

Optional top-level keys extend it compatibly (docs/reference/config.md). Unknown keys are
errors, so a typo never silently falls back to a default: every unknown key (top level
and in each ``[[regions]]`` table) is named at once, with the key it probably meant.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes, TableNames
from dynamodb_replicator.core.replicator import MissingTimestamp
from dynamodb_replicator.core.residency import parse_residency
from dynamodb_replicator.core.roles import ROLE_KEYS, parse_role
from dynamodb_replicator.core.settings import ConflictLogSettings, ReplicationSettings, load_policy

__all__ = ["RunnerConfig", "check_fencing", "load_config", "parse_config"]

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_REGION_KEYS = {"name", "endpoint_url", *ROLE_KEYS}
_REQUEST = "request_timeout_seconds"


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    tables: tuple[str, ...]
    regions: tuple[RegionSpec, ...]
    state_table: str = defaults.STATE_TABLE
    lease_timeout_seconds: float = defaults.LEASE_TIMEOUT_SECONDS
    idle_poll_max_ms: int = defaults.IDLE_POLL_MAX_MS
    page_limit: int = defaults.PAGE_LIMIT
    park_after_seconds: float = defaults.PARK_AFTER_SECONDS
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    # None: derived from the lease (defaults.request_timeout); see ``request_timeout``.
    request_timeout_seconds: float | None = None

    @property
    def request_timeout(self) -> float:
        """The longest one store request stays out (connect and read together)."""
        if self.request_timeout_seconds is not None:
            return self.request_timeout_seconds
        return defaults.request_timeout(self.lease_timeout_seconds) / _requests(self.regions)

    @property
    def request_lifetime(self) -> float:
        """The longest one store call stays out after its deadline check: its request, and
        for a region in another account the STS request a credentials refresh adds."""
        any_role = any(spec.role is not None for spec in self.regions)
        return defaults.request_lifetime(self.request_timeout, any_role=any_role)

    @property
    def lease_margin(self) -> float:
        """No write of a shard starts later than this before its lease expires (seconds)."""
        return defaults.lease_margin(self.lease_timeout_seconds)

    def region(self, name: str) -> RegionSpec:
        for spec in self.regions:
            if spec.name == name:
                return spec
        raise ConfigError(f"region {name!r} is not in the configuration")


def _typed(data: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{key} must be a {kind.__name__}, got {value!r}")
    return value


_STRUCTURED = ("tables", "regions", "table_names", "residency", _REQUEST)
"""The top-level keys besides ``_OPTIONAL``: lists, tables of tables, and the request
timeout (its default derives from the lease, so it is not a plain ``_OPTIONAL`` one)."""

_OPTIONAL: dict[str, tuple[type, Any]] = {
    "state_table": (str, defaults.STATE_TABLE),
    "lease_timeout_seconds": (float, defaults.LEASE_TIMEOUT_SECONDS),
    "idle_poll_max_ms": (int, defaults.IDLE_POLL_MAX_MS),
    "page_limit": (int, defaults.PAGE_LIMIT),
    "park_after_seconds": (float, defaults.PARK_AFTER_SECONDS),
    "missing_timestamp": (str, "fail"),
    "policy": (str, "last-writer-wins"),
    "tombstone_suffix": (str, defaults.TOMBSTONE_SUFFIX),
    "tombstone_ttl_seconds": (int, defaults.TOMBSTONE_TTL_SECONDS),
    "max_workers": (int, defaults.MAX_WORKERS),
    "conflict_log": (str, "-"),
    "conflict_sample_rate": (float, 1.0),
    "conflict_log_items": (bool, False),
}


def _regions(raw: Any) -> tuple[RegionSpec, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise ConfigError("[[regions]]: list at least two regions")
    specs: list[RegionSpec] = []
    for index, region in enumerate(raw):
        if not isinstance(region, dict):
            raise ConfigError(f"regions[{index}] must be a table")
        name = region.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"regions[{index}]: name is required")
        endpoint = region.get("endpoint_url")
        if endpoint is not None and (not isinstance(endpoint, str) or "://" not in endpoint):
            raise ConfigError(f"regions[{index}] ({name}): endpoint_url must be a URL")
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"region {name} is listed twice")
        role = parse_role(region, f"regions[{index}] ({name})")
        specs.append(RegionSpec(name, endpoint, role=role))
    return tuple(specs)


def _unknown(keys: Any, known: set[str], where: str) -> list[str]:
    """One line per key of ``keys`` not in ``known``, with a close match when there is one."""
    lines = []
    for key in sorted(set(keys) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{where}unknown key {key}{hint}")
    return lines


def _unknown_keys(data: Mapping[str, Any]) -> None:
    """Raise one ConfigError naming every unknown key, top level and in ``[[regions]]``."""
    lines = _unknown(data, {*_STRUCTURED, *_OPTIONAL}, "")
    regions = data.get("regions")
    for index, region in enumerate(regions if isinstance(regions, list) else []):
        if isinstance(region, dict):
            name = region.get("name")
            where = f"regions[{index}]" + (f" ({name})" if isinstance(name, str) else "")
            lines += _unknown(region, _REGION_KEYS, f"{where}: ")
    if lines:
        raise ConfigError("\n".join(lines))


def parse_config(data: Mapping[str, Any]) -> RunnerConfig:
    """Validate a parsed TOML document."""
    _unknown_keys(data)
    tables = data.get("tables")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise ConfigError(
            'tables must be a non-empty list of table names, e.g. tables = ["Orders"]'
        )
    for table in tables:
        if not _TABLE_NAME.match(table):
            raise ConfigError(f"invalid table name {table!r}")
    if len(set(tables)) != len(tables):
        raise ConfigError("a table is listed twice in tables")
    values = {key: _typed(data, key, kind, default) for key, (kind, default) in _OPTIONAL.items()}
    for key in (
        "lease_timeout_seconds",
        "idle_poll_max_ms",
        "page_limit",
        "max_workers",
        "park_after_seconds",
    ):
        if values[key] <= 0:
            raise ConfigError(f"{key} must be positive")
    # Absent: derived from the lease (defaults.request_timeout).
    request = _typed(data, _REQUEST, float, None) if _REQUEST in data else None
    if request is not None and request <= 0:
        raise ConfigError(f"{_REQUEST} must be positive")
    if values["page_limit"] > 1000:
        raise ConfigError("page_limit must be at most 1000 (the GetRecords limit)")
    try:
        missing = MissingTimestamp(values["missing_timestamp"])
    except ValueError:
        raise ConfigError("missing_timestamp must be fail or skip") from None
    fields = SystemAttributes()
    regions = _regions(data.get("regions"))
    replication = ReplicationSettings(
        policy=load_policy(values["policy"], fields),
        fields=fields,
        missing_timestamp=missing,
        tombstone_suffix=values["tombstone_suffix"],
        tombstone_ttl_seconds=values["tombstone_ttl_seconds"],
        max_workers=values["max_workers"],
        conflict_log=ConflictLogSettings(
            values["conflict_log"], values["conflict_sample_rate"], values["conflict_log_items"]
        ),
        names=_table_names(data.get("table_names", {}), tables, regions),
        residency=parse_residency(data.get("residency"), tables, [r.name for r in regions]),
    )
    config = RunnerConfig(
        tables=tuple(tables),
        regions=regions,
        state_table=values["state_table"],
        lease_timeout_seconds=values["lease_timeout_seconds"],
        idle_poll_max_ms=values["idle_poll_max_ms"],
        page_limit=values["page_limit"],
        park_after_seconds=values["park_after_seconds"],
        replication=replication,
        request_timeout_seconds=request,
    )
    check_fencing(config)
    return config


def _requests(regions: tuple[RegionSpec, ...]) -> int:
    """Requests one call may make: two where a role's credentials may be refreshed first."""
    return 2 if any(spec.role is not None for spec in regions) else 1


def check_fencing(config: RunnerConfig) -> None:
    """Fencing by time holds only when a call ends before the lease margin does."""
    lifetime, margin = config.request_lifetime, config.lease_margin
    if lifetime >= margin:
        twice = " (twice: a role's STS refresh)" if _requests(config.regions) > 1 else ""
        raise ConfigError(
            f"request_timeout_seconds{twice} ({lifetime:g} s) must be shorter than the lease "
            f"margin ({margin:g} s = {defaults.LEASE_MARGIN_FRACTION:.0%} of "
            f"lease_timeout_seconds {config.lease_timeout_seconds:g}): a write could land "
            "after its lease passed to another worker"
        )


def _table_names(raw: Any, tables: list[str], regions: tuple[RegionSpec, ...]) -> TableNames:
    """``[table_names.LOGICAL]`` tables: region = "physical name" where it differs."""
    if not isinstance(raw, dict):
        raise ConfigError("table_names must be a table of tables: [table_names.Orders]")
    known = {spec.name for spec in regions}
    for table, names in raw.items():
        if not isinstance(names, dict):
            raise ConfigError(f'table_names.{table} must map regions to names: eu-west-1 = "..."')
        for region, physical in names.items():
            if region not in known:
                raise ConfigError(f"table_names.{table}: region {region} is not in [[regions]]")
            if not isinstance(physical, str) or not _TABLE_NAME.match(physical):
                raise ConfigError(f"table_names.{table}: invalid table name {physical!r}")
    names = TableNames.of(raw)
    names.check(tables)
    return names


def load_config(path: str | Path) -> RunnerConfig:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data)
