"""Data residency: which regions an item may live in. Pure.

A table's rule names one attribute and maps its values to sets of regions (the item's
*scope*); an item without the attribute, or with a value the map does not name, has the
rule's default scope (every region unless the rule says otherwise). The converged state
of a key is its winning version projected onto that version's scope: the regions in the
scope hold it, the others hold nothing and remember a delete of it (``core.scoping``).

Values are matched on the attribute's String or Number form as written (``"DE"``,
``"49"``); any other type has the default scope.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import Item

__all__ = ["Residency", "ResidencyRule", "parse_residency"]


@dataclass(frozen=True, slots=True)
class ResidencyRule:
    """One table's rule: ``attribute``'s values -> regions; ``default`` for the rest
    (None: every region)."""

    attribute: str
    scopes: tuple[tuple[str, frozenset[str]], ...]
    default: frozenset[str] | None = None

    def value_of(self, item: Item) -> str | None:
        """The attribute's value as the rule matches it (None: absent or another type)."""
        held = item.get(self.attribute)
        if not held:
            return None
        kind, value = next(iter(held.items()))
        return str(value) if kind in ("S", "N") else None

    def allowed(self, item: Item) -> frozenset[str] | None:
        """The regions where ``item`` may live (None: every region)."""
        value = self.value_of(item)
        for name, allowed in self.scopes:
            if name == value:
                return allowed
        return self.default

    def allows(self, item: Item, region: str) -> bool:
        """May ``item`` live in ``region``?"""
        allowed = self.allowed(item)
        return allowed is None or region in allowed

    def scope(self, item: Item, regions: Collection[str]) -> frozenset[str]:
        """The regions of ``regions`` where ``item`` may live."""
        allowed = self.allowed(item)
        return frozenset(regions) if allowed is None else allowed & frozenset(regions)

    def describe(self, item: Item) -> str:
        """``country=DE`` (or ``country absent``), for messages."""
        value = self.value_of(item)
        return f"{self.attribute} absent" if value is None else f"{self.attribute}={value}"

    def check_key(self, table: str, key_names: Iterable[str]) -> None:
        """ConfigError when the rule's attribute is part of ``table``'s key (an item's
        scope would then never change, and a key would name where it lives)."""
        if self.attribute in set(key_names):
            raise ConfigError(
                f"residency.{table}: attribute {self.attribute} is part of the table's key"
            )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"attribute": self.attribute}
        data["scopes"] = {value: sorted(regions) for value, regions in self.scopes}
        if self.default is not None:
            data["default"] = sorted(self.default)
        return data


@dataclass(frozen=True, slots=True)
class Residency:
    """Every table's rule (a table without one: every item everywhere)."""

    rules: tuple[tuple[str, ResidencyRule], ...] = ()

    def rule(self, table: str) -> ResidencyRule | None:
        for name, rule in self.rules:
            if name == table:
                return rule
        return None

    def scope(self, table: str, item: Item, regions: Collection[str]) -> frozenset[str]:
        """The regions of ``regions`` where ``item`` of ``table`` may live."""
        rule = self.rule(table)
        return frozenset(regions) if rule is None else rule.scope(item, regions)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def to_env(self) -> str:
        """JSON for REPLICATOR_RESIDENCY (``parse_residency`` reads it back)."""
        return json.dumps({t: r.to_json() for t, r in self.rules}, sort_keys=True)


def _regions_of(raw: Any, where: str, known: Collection[str]) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ConfigError(f"{where} must be a list of region names")
    if not raw:
        raise ConfigError(f"{where} is empty: an item must be allowed in at least one region")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown region {unknown[0]} (not in the regions)")
    return frozenset(raw)


def _rule(table: str, raw: Any, known: Collection[str]) -> ResidencyRule:
    where = f"residency.{table}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table: attribute, scopes, default")
    unknown = set(raw) - {"attribute", "scopes", "default"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    attribute = raw.get("attribute")
    if not isinstance(attribute, str) or not attribute:
        raise ConfigError(f"{where}.attribute is required (the attribute naming the scope)")
    if attribute.startswith("__"):
        raise ConfigError(f"{where}.attribute {attribute}: names starting __ are the replicator's")
    scopes = raw.get("scopes")
    if not isinstance(scopes, Mapping) or not scopes:
        raise ConfigError(f'{where}.scopes must map values to regions: DE = ["eu-west-1"]')
    parsed = tuple(
        (str(value), _regions_of(regions, f"{where}.scopes.{value}", known))
        for value, regions in sorted(scopes.items())
    )
    default = raw.get("default")
    return ResidencyRule(
        attribute,
        parsed,
        None if default is None else _regions_of(default, f"{where}.default", known),
    )


def parse_residency(
    raw: Any, tables: Collection[str] | None, regions: Collection[str]
) -> Residency:
    """Rules from ``{table: {attribute, scopes: {value: [regions]}, default?: [regions]}}``
    (the TOML ``[residency.TABLE]`` tables, or REPLICATOR_RESIDENCY's JSON). ``tables``:
    the replicated tables (None: not known here, as in a Lambda function)."""
    if raw is None:
        return Residency()
    if not isinstance(raw, Mapping):
        raise ConfigError("residency must be a table of tables: [residency.Orders]")
    rules: list[tuple[str, ResidencyRule]] = []
    for table, rule in sorted(raw.items()):
        if tables is not None and table not in tables:
            raise ConfigError(f"residency.{table}: {table} is not in tables")
        rules.append((table, _rule(table, rule, regions)))
    return Residency(tuple(rules))
