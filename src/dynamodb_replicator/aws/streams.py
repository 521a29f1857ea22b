"""DynamoDB Streams: find a table's stream, list its shards, read records.

Errors come out translated (``aws.errors``); the two that are normal events of a stream
reader have their own types so callers can react: an expired iterator (take a new one at
the checkpoint) and trimmed data (the records are gone: start at TRIM_HORIZON).
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import TableNames
from dynamodb_replicator.core.streams import Page, Shard

__all__ = ["StreamClient"]


class StreamClient:
    """One region's DynamoDB and DynamoDB Streams clients, for stream reading. Tables are
    named by their logical names, found by their names in the region (``names``)."""

    def __init__(
        self, region: str, dynamodb: Any, streams: Any, names: TableNames | None = None
    ) -> None:
        self.region = region
        self.dynamodb = dynamodb
        self.streams = streams
        self.names = names or TableNames()

    def _call(self, action: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        with translated(self.region, action):
            return dict(method(**kwargs))

    def stream_arn(self, table: str) -> str:
        """The table's current stream; ConfigError when it has none or the wrong view."""
        table = self.names.physical(table, self.region)
        described = self._call(
            f"DescribeTable {table}", self.dynamodb.describe_table, TableName=table
        )
        spec = described["Table"].get("StreamSpecification") or {}
        arn = described["Table"].get("LatestStreamArn")
        if not spec.get("StreamEnabled") or not arn:
            raise ConfigError(
                f"table {table} in {self.region} has no stream: enable one with "
                f"`aws dynamodb update-table --region {self.region} --table-name {table} "
                "--stream-specification "
                "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`"
            )
        if spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            raise ConfigError(
                f"table {table} in {self.region} has a {spec.get('StreamViewType')} stream; "
                "replication needs NEW_AND_OLD_IMAGES (disable the stream, then enable it "
                "again with StreamViewType=NEW_AND_OLD_IMAGES)"
            )
        return str(arn)

    def stream_arns(self, table: str) -> list[str]:
        """The table's current stream and any older ones still readable (re-enabled
        streams get a new ARN; the old one's records must still be finished)."""
        current = self.stream_arn(table)
        physical = self.names.physical(table, self.region)
        listed = self._call("ListStreams", self.streams.list_streams, TableName=physical).get(
            "Streams", []
        )
        older = [str(s["StreamArn"]) for s in listed if s.get("StreamArn") != current]
        return [*sorted(older), current]

    def shards(self, arn: str) -> list[Shard]:
        """Every shard of the stream (DescribeStream pages through them)."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": arn}
        while True:
            page = self._call("DescribeStream", self.streams.describe_stream, **kwargs)
            description = page["StreamDescription"]
            for raw in description.get("Shards", []):
                numbers = raw.get("SequenceNumberRange", {})
                shards.append(
                    Shard(
                        raw["ShardId"],
                        raw.get("ParentShardId"),
                        numbers.get("StartingSequenceNumber", "0"),
                        numbers.get("EndingSequenceNumber"),
                    )
                )
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        """An iterator after sequence number ``after``, or at TRIM_HORIZON when None."""
        kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard_id}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
        return str(
            self._call("GetShardIterator", self.streams.get_shard_iterator, **kwargs)[
                "ShardIterator"
            ]
        )

    def read(self, iterator: str, limit: int = 1000) -> Page:
        page = self._call(
            "GetRecords", self.streams.get_records, ShardIterator=iterator, Limit=limit
        )
        return Page(page.get("Records", []), page.get("NextShardIterator"))
