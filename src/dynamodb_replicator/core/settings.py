"""Replication settings shared by the Lambda handler and the runner, and the conflict
policy's spec (``load_policy`` reads one, ``policy_spec`` writes it back). Pure."""

from __future__ import annotations

import importlib
from collections.abc import Hashable
from dataclasses import dataclass, field

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import SystemAttributes, TableNames, Version
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion
from dynamodb_replicator.core.replicator import MissingTimestamp
from dynamodb_replicator.core.residency import Residency

__all__ = [
    "ConflictLogSettings",
    "NamedPolicy",
    "ReplicationSettings",
    "load_policy",
    "policy_spec",
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
    """How records are replicated; ``names``: the tables' physical names per region;
    ``residency``: each table's rule of where its items may live."""

    policy: ConflictPolicy = field(default_factory=LastWriterWins)
    fields: SystemAttributes = field(default_factory=SystemAttributes)
    missing_timestamp: MissingTimestamp = MissingTimestamp.FAIL
    tombstone_suffix: str = defaults.TOMBSTONE_SUFFIX
    tombstone_ttl_seconds: int = defaults.TOMBSTONE_TTL_SECONDS
    max_workers: int = defaults.MAX_WORKERS
    conflict_log: ConflictLogSettings = field(default_factory=ConflictLogSettings)
    names: TableNames = field(default_factory=TableNames)
    residency: Residency = field(default_factory=Residency)  # where items may live
    # The longest one store request stays out, connect and read (aws/clients.py).
    request_timeout_seconds: float = defaults.REQUEST_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    """A policy loaded by import path, remembering its spec so a deployment can name it."""

    spec: str
    policy: ConflictPolicy

    def order_key(self, version: Version) -> tuple[Hashable, ...]:
        return self.policy.order_key(version)

    def stored_is_older(self, incoming: Version, holder: str, *, strict: bool) -> Condition:
        return self.policy.stored_is_older(incoming, holder, strict=strict)


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
    return NamedPolicy(spec, policy)


def policy_spec(policy: ConflictPolicy) -> str:
    """The spec ``load_policy`` reads back as ``policy`` (for the Lambda's environment)."""
    if isinstance(policy, NamedPolicy):
        return policy.spec
    if isinstance(policy, LastWriterWins):
        return "last-writer-wins"
    if isinstance(policy, PreferredRegion):
        return f"preferred-region:{policy.region}"
    raise ConfigError(f"{type(policy).__name__} has no spec: load a custom policy with load_policy")
