"""A workload of items with a residency attribute, and what each region must end with.

Three regions: DE items may live in the two EU regions, US items in the US region, items of
any other country (or none) everywhere. Every region's writer puts items of its own scope,
updates them (moving them between scopes: a FR item becomes DE or US, a DE item FR, ...)
and deletes them; one write in ten is made outside the writer's region's scope (a contract
violation: the replicator moves it to its scope and removes it where it was written). The
application never deletes an item its region may not hold (a condition on the delete): the
README says why that is the one gap of a write made outside its scope.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.core.model import Version
from dynamodb_replicator.core.policy import stored_version
from dynamodb_replicator.core.residency import ResidencyRule
from tests.workload import (
    FIELDS,
    Event,
    Workload,
    differences,
    user_attributes,
    wait_until_converged,
)

EU_CENTRAL, EU_WEST, US_EAST = "eu-central-1", "eu-west-1", "us-east-1"
REGIONS = (EU_CENTRAL, EU_WEST, US_EAST)
RULE = ResidencyRule(
    "country",
    (("DE", frozenset({EU_CENTRAL, EU_WEST})), ("US", frozenset({US_EAST}))),
)
RULE_TOML = f"""
[residency.{{table}}]
attribute = "country"
scopes = {{{{ DE = ["{EU_CENTRAL}", "{EU_WEST}"], US = ["{US_EAST}"] }}}}
"""
COUNTRIES = ("DE", "US", "FR", None)


def allowed_countries(region: str) -> list[str | None]:
    """The countries whose items may live in ``region``."""
    return [c for c in COUNTRIES if RULE.allows(_with(c), region)]


def _with(country: str | None) -> dict[str, Any]:
    return {} if country is None else {"country": {"S": country}}


@dataclass
class ResidentWorkload(Workload):
    """``Workload`` with a country on every item; see the module docstring."""

    def _country(self, region: str, rng: random.Random) -> str | None:
        if rng.random() < 0.1:  # outside the region's scope, on purpose
            return rng.choice(COUNTRIES)
        return rng.choice(allowed_countries(region))

    def _write(self, region: str, rng: random.Random, stamp: int) -> None:
        client, key = self.clients[region], f"k{rng.randrange(self.keys)}"
        ddb_key = {"pk": {"S": key}}
        roll, version = rng.random(), Version.of(str(stamp), region)
        if roll < 0.4:
            item = {**ddb_key, FIELDS.timestamp: {"N": str(stamp)}, "v": {"S": f"{region}-{stamp}"}}
            item |= _with(self._country(region, rng))
            client.put_item(TableName=self.table, Item=item)
            self._record(Event(key, version, False, item))
        elif roll < 0.8:
            moves = rng.random() < 0.5  # a scope-changing update
            country = self._country(region, rng) if moves else None
            names = {"#t": FIELDS.timestamp, "#u": f"u_{region[:2]}"}
            values = {":t": {"N": str(stamp)}, ":u": {"N": str(stamp)}}
            update = "SET #t = :t, #u = :u"
            if moves and country is not None:
                update, values[":c"] = update + ", #c = :c", {"S": country}
                names["#c"] = "country"
            elif moves:
                update, names["#c"] = update + " REMOVE #c", "country"
            new = client.update_item(
                TableName=self.table,
                Key=ddb_key,
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
            self._record(Event(key, version, False, user_attributes(new)))
        else:
            self._delete(region, client, key)

    def _delete(self, region: str, client: Any, key: str) -> None:
        """Delete ``key`` in ``region`` if it is an item the region may hold."""
        allowed = [c for c in allowed_countries(region) if c is not None]
        values = {f":c{i}": {"S": c} for i, c in enumerate(allowed)}
        condition = "attribute_not_exists(#c) OR #c IN (" + ", ".join(values) + ")"
        try:
            old = client.delete_item(
                TableName=self.table,
                Key={"pk": {"S": key}},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#c": "country"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
            )
        except client.exceptions.ConditionalCheckFailedException:
            return
        version = stored_version(old.get("Attributes"), region, FIELDS)
        if version is not None:
            self._record(Event(key, version, True, None))


def scoped_differences(
    clients: dict[str, Any], table: str, expected: dict[str, dict[str, Any] | None]
) -> list[str]:
    """What differs from the winners projected onto their scopes, per region."""
    return differences(clients, table, expected, RULE.allows)


def wait_until_scoped(
    clients: dict[str, Any],
    table: str,
    expected: dict[str, dict[str, Any] | None],
    timeout: float = 90.0,
) -> float:
    """Poll until every region holds exactly what its scope allows; seconds it took."""
    return wait_until_converged(clients, table, expected, timeout, RULE.allows)
