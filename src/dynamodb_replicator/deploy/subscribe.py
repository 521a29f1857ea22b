"""Wire a Lambda function to the streams of an environment's tables, idempotently.

Tables named ``ENV_*`` (the replicator's own tombstone and state tables excluded), or a
config's tables by their names in the region, get a
NEW_AND_OLD_IMAGES stream if they have none, and one event source mapping each to the
function. A second run changes nothing; a changed setting updates the mapping in place; a
disabled mapping is reported as such and enabled. The plan is pure; ``subscribe`` applies
it through a ``SubscriptionPort`` (``aws.lambda_mappings.LambdaMappings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.deploy.mapping import MappingSettings

__all__ = ["Step", "SubscriptionPort", "failed", "plan_subscriptions", "subscribe"]

_DISABLED = ("Disabled", "Disabling")


@dataclass(frozen=True, slots=True)
class Step:
    """One change (or a reason why none can be made) for one table."""

    table: str
    action: str  # "enable-stream", "create", "update", "enable", "none", "refuse"
    detail: str = ""
    changes: Mapping[str, Any] = field(default_factory=dict)
    uuid: str = ""  # the existing mapping's, for "update" and "enable"


class SubscriptionPort(Protocol):
    """What ``subscribe`` reads and changes in one region."""

    region: str

    def require_function(self, function: str) -> None: ...
    def tables(self, prefix: str, excluded: Callable[[str], bool]) -> dict[str, Any]: ...
    def named(self, tables: Sequence[str]) -> dict[str, Any]: ...
    def mappings(self, function: str) -> dict[str, Any]: ...
    def enable_stream(self, table: str) -> None: ...
    def create_mapping(self, function: str, table: str, settings: Mapping[str, Any]) -> None: ...
    def update_mapping(self, uuid: str, changes: Mapping[str, Any]) -> None: ...


def _current(existing: Mapping[str, Any], key: str) -> Any:
    if key == "DestinationConfig":  # compare the on-failure ARN only (AWS adds empty parts)
        on_failure = (existing.get(key) or {}).get("OnFailure") or {}
        destination = on_failure.get("Destination")
        return {"OnFailure": {"Destination": destination}} if destination else None
    return existing.get(key)


def _existing_step(name: str, existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> Step:
    changes = {k: v for k, v in wanted.items() if _current(existing, k) != v}
    uuid = existing.get("UUID", "")
    if existing.get("State") in _DISABLED:
        detail = f"{uuid} (was {existing['State']})"
        return Step(name, "enable", detail, {"Enabled": True} | changes, uuid)
    return Step(name, "update" if changes else "none", uuid, changes, uuid)


def plan_subscriptions(
    tables: Mapping[str, Mapping[str, Any]],
    mappings: Mapping[str, Mapping[str, Any]],
    settings: MappingSettings,
) -> list[Step]:
    """Pure: ``tables`` name -> DescribeTable; ``mappings`` stream ARN -> existing mapping."""
    steps: list[Step] = []
    wanted = settings.as_api()
    for name, table in sorted(tables.items()):
        spec = table.get("StreamSpecification") or {}
        arn = table.get("LatestStreamArn")
        if not spec.get("StreamEnabled") or not arn:
            steps.append(Step(name, "enable-stream", "enable a NEW_AND_OLD_IMAGES stream"))
            steps.append(Step(name, "create", "map the new stream to the function"))
        elif spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            reason = (
                f"its stream is {spec.get('StreamViewType')}: the view type of an existing "
                "stream cannot change; disable the stream, then run subscribe again"
            )
            steps.append(Step(name, "refuse", reason))
        elif (existing := mappings.get(str(arn))) is None:
            steps.append(Step(name, "create", f"map {arn}"))
        else:
            steps.append(_existing_step(name, existing, wanted))
    return steps


def subscribe(
    port: SubscriptionPort,
    *,
    env: str | None,
    function: str,
    settings: MappingSettings,
    excluded: Callable[[str], bool],
    dry_run: bool,
    named: Sequence[str] = (),
) -> list[Step]:
    """Plan, and unless ``dry_run`` apply, the subscriptions of ``env``'s tables, or of the
    tables ``named`` (a config's, by their names in the port's region)."""
    port.require_function(function)
    tables = port.named(named) if named else port.tables(f"{env}_", excluded)
    if not tables:
        raise ConfigError(f"no table in {port.region} is named {env}_*")
    steps = plan_subscriptions(tables, port.mappings(function), settings)
    if dry_run:
        return steps
    for step in steps:
        if step.action == "enable-stream":
            port.enable_stream(step.table)
        elif step.action == "create":
            port.create_mapping(function, step.table, settings.as_api())
        elif step.action in ("update", "enable"):
            port.update_mapping(step.uuid, step.changes)
    return steps


def failed(steps: list[Step]) -> bool:
    """Whether a table could not be subscribed."""
    return any(step.action == "refuse" for step in steps)
