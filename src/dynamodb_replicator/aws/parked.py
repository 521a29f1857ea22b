"""Parked records in the runner's state table of their source region (beside checkpoints
and leases, so ``status`` reads them with one scan and nothing new is created).

One item per record: ``pk = parked|TABLE|STREAM|SHARD|SEQUENCE``; ``record`` holds the whole
stream record (Lambda/JSON form) as zlib-compressed JSON. A record too large for an item
even compressed keeps its keys only, and says so in ``reason``.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.scan import scan_prefix
from dynamodb_replicator.core.errors import NotFoundError
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.retry import Backoff, call_with_retries

__all__ = ["PREFIX", "DynamoParkingLot", "parked_from_item", "parked_to_item"]

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX = "parked|"
_ITEM_LIMIT = 350_000  # bytes for the record: DynamoDB's item limit is 400 KB


def _packed(record: Mapping[str, Any]) -> tuple[bytes, str]:
    packed = zlib.compress(json.dumps(record, sort_keys=True).encode())
    if len(packed) <= _ITEM_LIMIT:
        return packed, ""
    body = dict(record.get("dynamodb", {}))
    kept = {k: v for k, v in body.items() if k not in ("NewImage", "OldImage")}
    packed = zlib.compress(json.dumps({**record, "dynamodb": kept}, sort_keys=True).encode())
    return packed, " (record too large to keep whole: its images were dropped, keys kept)"


def _pk(parked: ParkedRecord) -> dict[str, str]:
    return {"S": f"{PREFIX}{parked.table}|{parked.stream}|{parked.shard_id}|{parked.sequence}"}


def parked_to_item(parked: ParkedRecord) -> dict[str, Any]:
    """The state-table item of ``parked``."""
    record, note = _packed(parked.record)
    return {
        "pk": _pk(parked),
        "table": {"S": parked.table},
        "source": {"S": parked.source},
        "stream": {"S": parked.stream},
        "shard": {"S": parked.shard_id},
        "sequence": {"S": parked.sequence},
        "key": {"S": parked.key},
        "targets": {"L": [{"S": t} for t in parked.targets]},
        "reason": {"S": (parked.reason + note)[:2000]},
        "parked_at": {"N": f"{parked.parked_at:.3f}"},
        "record": {"B": record},
        "kind": {"S": parked.kind},
    }


def parked_from_item(item: Mapping[str, Any]) -> ParkedRecord:
    """``parked_to_item``'s inverse."""
    return ParkedRecord(
        table=item["table"]["S"],
        source=item["source"]["S"],
        stream=item["stream"]["S"],
        shard_id=item["shard"]["S"],
        sequence=item["sequence"]["S"],
        key=item["key"]["S"],
        targets=tuple(t["S"] for t in item["targets"]["L"]),
        reason=item["reason"]["S"],
        parked_at=float(item["parked_at"]["N"]),
        record=json.loads(zlib.decompress(bytes(item["record"]["B"]))),
        kind=item.get("kind", {}).get("S", ""),  # absent in records parked by older versions
    )


class DynamoParkingLot:
    """The ParkingLot of one region's state table."""

    def __init__(
        self, client: Any, table: str, region: str, backoff: Backoff | None = None
    ) -> None:
        self.client = client
        self.table = table
        self.region = region
        self.backoff = backoff or Backoff()

    def _call(self, action: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            with translated(self.region, f"{action} on {self.table}"):
                return call()

        return call_with_retries(attempt, self.backoff)

    def park(self, parked: ParkedRecord) -> None:
        item = parked_to_item(parked)
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=item))

    def parked(self, tables: Sequence[str] | None = None) -> list[ParkedRecord]:
        """Every parked record (of ``tables``), oldest first; unreadable items are skipped.
        A region without the state table has none: no runner has run there, so nothing was
        parked (a Lambda-only deployment replays its batches from its failure store)."""
        try:
            items = self._items()
        except NotFoundError:
            return []
        found = []
        for item in items:
            try:
                found.append(parked_from_item(item))
            except (KeyError, ValueError, TypeError, zlib.error):
                log.warning("unreadable parked record skipped", extra={"pk": item["pk"]["S"]})
        chosen = [p for p in found if tables is None or p.table in tables]
        return sorted(chosen, key=lambda p: (p.parked_at, p.table, int(p.sequence)))

    def _items(self) -> list[dict[str, Any]]:
        return scan_prefix(self._call, self.client, self.table, PREFIX)

    def remove(self, parked: ParkedRecord) -> None:
        key = {"pk": _pk(parked)}
        self._call("DeleteItem", lambda: self.client.delete_item(TableName=self.table, Key=key))
