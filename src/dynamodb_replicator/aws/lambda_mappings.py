"""Lambda event source mappings and the tables they read, over boto3 (the adapter behind
``deploy.subscribe``'s ``SubscriptionPort``). Errors come out translated."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.tables import describe_table, wait_until_exists
from dynamodb_replicator.core.errors import ConfigError, NotFoundError

__all__ = ["LambdaMappings"]


class LambdaMappings:
    """One region's DynamoDB and Lambda clients, as ``subscribe`` needs them."""

    def __init__(self, dynamodb: Any, lambdas: Any, region: str) -> None:
        self._dynamodb, self._lambdas, self.region = dynamodb, lambdas, region

    def require_function(self, function: str) -> None:
        """A ConfigError saying how to deploy it when ``function`` does not exist."""
        try:
            self._call("GetFunction", self._lambdas.get_function, FunctionName=function)
        except NotFoundError as exc:
            raise ConfigError(
                f"function {function} does not exist in {self.region}: deploy it first "
                "(dynamodb-replicator template) or pass --function"
            ) from exc

    def tables(self, prefix: str, excluded: Callable[[str], bool]) -> dict[str, Any]:
        """DescribeTable of every table named ``prefix*`` that is not ``excluded``."""
        names: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._call("ListTables", self._dynamodb.list_tables, **kwargs)
            names += [n for n in page["TableNames"] if n.startswith(prefix) and not excluded(n)]
            if not page.get("LastEvaluatedTableName"):
                break
            kwargs["ExclusiveStartTableName"] = page["LastEvaluatedTableName"]
        describe = self._dynamodb.describe_table
        return {n: self._call(f"DescribeTable {n}", describe, TableName=n)["Table"] for n in names}

    def named(self, tables: Sequence[str]) -> dict[str, Any]:
        """DescribeTable of each of ``tables``; ConfigError naming a missing one."""
        described: dict[str, Any] = {}
        for name in tables:
            found = describe_table(self._dynamodb, name, self.region)
            if found is None:
                raise ConfigError(f"table {name} does not exist in {self.region}")
            described[name] = found
        return described

    def environment(self, function: str) -> Mapping[str, str]:
        """The function's environment variables."""
        found = self._call("GetFunction", self._lambdas.get_function, FunctionName=function)
        variables: Mapping[str, str] = (
            found["Configuration"].get("Environment", {}).get("Variables", {})
        )
        return variables

    def mappings(self, function: str) -> dict[str, Any]:
        """The function's event source mappings, by stream ARN."""
        found: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"FunctionName": function}
        while True:
            list_mappings = self._lambdas.list_event_source_mappings
            page = self._call("ListEventSourceMappings", list_mappings, **kwargs)
            for mapping in page.get("EventSourceMappings", []):
                found[mapping["EventSourceArn"]] = mapping
            if not page.get("NextMarker"):
                return found
            kwargs["Marker"] = page["NextMarker"]

    def enable_stream(self, table: str) -> None:
        """Give ``table`` a NEW_AND_OLD_IMAGES stream and wait until it is active."""
        self._call(
            f"UpdateTable {table}",
            self._dynamodb.update_table,
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        wait_until_exists(self._dynamodb, table, self.region)

    def create_mapping(self, function: str, table: str, settings: Mapping[str, Any]) -> None:
        """Map ``table``'s latest stream to ``function``, from the oldest record kept."""
        described = self._call(
            f"DescribeTable {table}", self._dynamodb.describe_table, TableName=table
        )
        self._call(
            f"CreateEventSourceMapping {table}",
            self._lambdas.create_event_source_mapping,
            FunctionName=function,
            EventSourceArn=described["Table"]["LatestStreamArn"],
            StartingPosition="TRIM_HORIZON",
            Enabled=True,
            **settings,
        )

    def update_mapping(self, uuid: str, changes: Mapping[str, Any]) -> None:
        """Change (and with ``Enabled``, enable) the mapping ``uuid`` in place."""
        update = self._lambdas.update_event_source_mapping
        self._call(f"UpdateEventSourceMapping {uuid}", update, UUID=uuid, **changes)

    def _call(self, action: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        with translated(self.region, action):
            return call(**kwargs)
