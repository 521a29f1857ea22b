"""Wire a Lambda function to the streams of an environment's tables, idempotently.

Tables named ``ENV_*`` (the replicator's own tombstone and state tables excluded) get a
NEW_AND_OLD_IMAGES stream if they have none, and one event source mapping each to the
function. A second run changes nothing; a changed setting updates the mapping in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.aws.tables import wait_until_exists
from dynamodb_replicator.core.errors import ConfigError, ReplicatorError

__all__ = ["MappingSettings", "Step", "failed", "plan_subscriptions", "subscribe"]


@dataclass(frozen=True, slots=True)
class MappingSettings:
    batch_size: int = 100
    parallelization_factor: int = 1
    maximum_retry_attempts: int = -1
    maximum_record_age_in_seconds: int = -1
    bisect_on_error: bool = True

    def as_api(self) -> dict[str, Any]:
        return {
            "BatchSize": self.batch_size,
            "ParallelizationFactor": self.parallelization_factor,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": self.maximum_record_age_in_seconds,
            "BisectBatchOnFunctionError": self.bisect_on_error,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One change (or a reason why none can be made) for one table."""

    table: str
    action: str  # "enable-stream", "create", "update", "none", "refuse"
    detail: str = ""
    changes: Mapping[str, Any] = field(default_factory=dict)


def _differences(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if existing.get(k) != v}


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
            continue
        if spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            steps.append(
                Step(
                    name,
                    "refuse",
                    f"its stream is {spec.get('StreamViewType')}: the view type of an existing "
                    "stream cannot change; disable the stream, then run subscribe again",
                )
            )
            continue
        existing = mappings.get(str(arn))
        if existing is None:
            steps.append(Step(name, "create", f"map {arn}"))
            continue
        changes = _differences(existing, wanted)
        steps.append(Step(name, "update" if changes else "none", existing.get("UUID", ""), changes))
    return steps


def _translated(exc: ClientError | BotoCoreError, region: str, action: str) -> ReplicatorError:
    if isinstance(exc, ClientError) and error_code(exc) in (
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedOperation",
    ):
        return ConfigError(f"{action} in {region}: permission denied ({exc})")
    return translate(exc, region, action)


def _call(region: str, action: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        raise _translated(exc, region, action) from exc


def _tables(
    dynamodb: Any, region: str, prefix: str, excluded: Callable[[str], bool]
) -> dict[str, Any]:
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = _call(region, "ListTables", functools.partial(dynamodb.list_tables, **kwargs))
        names += [n for n in page["TableNames"] if n.startswith(prefix) and not excluded(n)]
        if not page.get("LastEvaluatedTableName"):
            break
        kwargs["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]
    return {
        n: _call(
            region, f"DescribeTable {n}", functools.partial(dynamodb.describe_table, TableName=n)
        )["Table"]
        for n in names
    }


def _mappings(lambdas: Any, region: str, function: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"FunctionName": function}
    while True:
        page = _call(
            region,
            "ListEventSourceMappings",
            functools.partial(lambdas.list_event_source_mappings, **kwargs),
        )
        for mapping in page.get("EventSourceMappings", []):
            found[mapping["EventSourceArn"]] = mapping
        if not page.get("NextMarker"):
            return found
        kwargs["Marker"] = page["NextMarker"]


def subscribe(
    dynamodb: Any,
    lambdas: Any,
    *,
    region: str,
    env: str,
    function: str,
    settings: MappingSettings,
    excluded: Callable[[str], bool],
    dry_run: bool,
) -> list[Step]:
    """Plan, and unless ``dry_run`` apply, the subscriptions of ``env``'s tables."""
    try:
        lambdas.get_function(FunctionName=function)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ConfigError(
                f"function {function} does not exist in {region}: deploy it first "
                "(dynamodb-replicator template) or pass --function"
            ) from exc
        raise _translated(exc, region, "GetFunction") from exc
    tables = _tables(dynamodb, region, f"{env}_", excluded)
    if not tables:
        raise ConfigError(f"no table in {region} is named {env}_*")
    steps = plan_subscriptions(tables, _mappings(lambdas, region, function), settings)
    if dry_run:
        return steps
    for step in steps:
        _apply(dynamodb, lambdas, step, region=region, function=function, settings=settings)
    return steps


def _apply(
    dynamodb: Any,
    lambdas: Any,
    step: Step,
    *,
    region: str,
    function: str,
    settings: MappingSettings,
) -> None:
    if step.action == "enable-stream":
        _call(
            region,
            f"UpdateTable {step.table}",
            lambda: dynamodb.update_table(
                TableName=step.table,
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            ),
        )
        wait_until_exists(dynamodb, step.table, region)
    elif step.action == "create":
        arn = dynamodb.describe_table(TableName=step.table)["Table"]["LatestStreamArn"]
        _call(
            region,
            f"CreateEventSourceMapping {step.table}",
            lambda: lambdas.create_event_source_mapping(
                FunctionName=function,
                EventSourceArn=arn,
                StartingPosition="TRIM_HORIZON",
                Enabled=True,
                **settings.as_api(),
            ),
        )
    elif step.action == "update":
        _call(
            region,
            f"UpdateEventSourceMapping {step.table}",
            lambda: lambdas.update_event_source_mapping(UUID=step.detail, **dict(step.changes)),
        )


def failed(steps: list[Step]) -> bool:
    return any(step.action == "refuse" for step in steps)
