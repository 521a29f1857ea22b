"""The Lambda's failure store: an S3 bucket its event source mappings write discarded
batches to. For a stream source, Lambda writes the invocation record as one JSON object:
metadata (``requestContext``, ``DDBStreamBatchInfo``: stream ARN, shard, first and last
SequenceNumber) and ``payload``, the invocation's event (``{"Records": [...]}``, as a JSON
text or object). Only the payload's records are replayed; an object without them (an SQS
or SNS destination keeps only the metadata) is reported, since its records can be read
from the stream only while it retains them (24 h).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.errors import translated

__all__ = ["CapturedBatch", "FailureStore", "records_of"]


@dataclass(frozen=True, slots=True)
class CapturedBatch:
    key: str  # the S3 object key
    records: tuple[Mapping[str, Any], ...]
    batch_info: Mapping[str, Any]  # DDBStreamBatchInfo ({} when absent)


def records_of(document: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The stream records an invocation record holds (none: metadata only)."""
    payload = document.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return ()
    if isinstance(payload, Mapping) and isinstance(payload.get("Records"), list):
        return tuple(r for r in payload["Records"] if isinstance(r, Mapping))
    return ()


class FailureStore:
    """Reads and removes captured batches under ``prefix`` in ``bucket``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", region: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.region = region

    def batches(self) -> Iterator[CapturedBatch]:
        token: dict[str, Any] = {}
        while True:
            with translated(self.region, f"ListObjectsV2 on {self.bucket}"):
                page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, **token)
            for entry in page.get("Contents", []):
                yield self._read(entry["Key"])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _read(self, key: str) -> CapturedBatch:
        with translated(self.region, f"GetObject {key} on {self.bucket}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
        if not isinstance(document, Mapping):
            document = {}
        info = document.get("DDBStreamBatchInfo")
        return CapturedBatch(key, records_of(document), info if isinstance(info, Mapping) else {})

    def remove(self, key: str) -> None:
        with translated(self.region, f"DeleteObject {key} on {self.bucket}"):
            self.client.delete_object(Bucket=self.bucket, Key=key)
