"""The runner's state table, one per source region: checkpoints, leases, live workers.

Items (hash key ``pk``, a string):
  ``cp|TABLE|STREAM|SHARD``     one attribute ``pos#TARGET`` per target region: the last
                                SequenceNumber that target accepted, or ``END``
  ``lease|TABLE|STREAM|SHARD``  ``owner`` and ``expires`` (epoch ms): who reads the shard
  ``worker|ID``                 ``expires``, ``instance``: a live worker, for sharing shards
                                fairly; claimed conditionally by one process (``instance``)
  ``stats|TABLE|STREAM|SHARD``  the holder's latest shard report (see aws/report_items.py)
  ``cp|backfill:TABLE|SOURCE|SEGMENT-of-SEGMENTS``
                                a copy's progress (core/progress.py), attribute
                                ``pos#TARGET``: the last key copied (``codec.key_to_json``)
                                or ``DONE``. It shares the checkpoint layout, under a table
                                name no stream can have, so copies left half-way by earlier
                                versions resume.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.tables import describe_table, wait_until_exists
from dynamodb_replicator.core.codec import key_from_json, key_to_json
from dynamodb_replicator.core.errors import ConditionFailedError, ConfigError, ResourceInUseError
from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import ShardRef

__all__ = ["DynamoStateStore", "WorkerIdInUseError", "ensure_state_table"]

T = TypeVar("T")

# A worker id is free when unclaimed, expired, or claimed by this process already.
_FREE_OR_MINE = "attribute_not_exists(pk) OR #expires < :now OR #instance = :me"

_SCAN_DONE = "DONE"  # stored for a finished segment (never a key_to_json text)


def ensure_state_table(client: Any, name: str, region: str) -> None:
    """Create the state table (on-demand, hash key ``pk``) if it does not exist."""
    if describe_table(client, name, region) is not None:
        return
    try:
        with translated(region, f"CreateTable {name}"):
            client.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
    except ResourceInUseError:
        pass  # created concurrently: fine
    wait_until_exists(client, name, region)


class WorkerIdInUseError(ConfigError):
    """Another process holds this worker id (its claim is live): ``holder`` is that
    process's instance, ``expires_ms`` when its claim ends unless renewed."""

    def __init__(
        self, worker: str, region: str, *, holder: str, expires_ms: int, now_ms: int
    ) -> None:
        super().__init__(
            f"worker id {worker!r} is in use by another running process ({holder}, claim in "
            f"{region} renewed until {max(0, expires_ms - now_ms) / 1000:.0f} s from now): "
            "give each runner its own --worker-id"
        )
        self.holder, self.expires_ms = holder, expires_ms


class DynamoStateStore:
    """Checkpoints and leases in one region's state table."""

    def __init__(
        self,
        client: Any,
        table: str,
        region: str,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.region = region
        self.backoff = backoff or Backoff()
        self.stop = stop  # set on shutdown: retries give up at once

    def _call(self, action: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            with translated(self.region, f"{action} on {self.table}"):
                return call()

        return call_with_retries(attempt, self.backoff, stop=self.stop)

    # -- checkpoints -------------------------------------------------------------------
    def load(self, shard: ShardRef) -> dict[str, str]:
        """target region -> last accepted SequenceNumber (or END); absent: no checkpoint."""
        return self._load_positions(f"{shard.table}|{shard.stream_label}|{shard.shard_id}")

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        """Record new positions for some targets (others keep theirs)."""
        self._save_positions(f"{shard.table}|{shard.stream_label}|{shard.shard_id}", positions)

    # -- scan progress -----------------------------------------------------------------
    @staticmethod
    def _progress_id(scan: ScanSegment) -> str:
        return f"backfill:{scan.table}|{scan.source}|{scan.segment}-of-{scan.segments}"

    def load_progress(self, scan: ScanSegment) -> SegmentProgress:
        """How far the segment's copy into ``scan.target`` came (not started: none saved)."""
        saved = self._load_positions(self._progress_id(scan)).get(scan.target)
        if saved == _SCAN_DONE:
            return SegmentProgress(done=True)
        return SegmentProgress(key_from_json(saved) if saved else None)

    def save_progress(self, scan: ScanSegment, progress: SegmentProgress) -> None:
        if progress.done:
            saved = _SCAN_DONE
        elif progress.last_key is not None:
            saved = key_to_json(progress.last_key)
        else:
            return  # not started: nothing to remember
        self._save_positions(self._progress_id(scan), {scan.target: saved})

    def _load_positions(self, name: str) -> dict[str, str]:
        key = {"pk": {"S": f"cp|{name}"}}
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True),
        ).get("Item", {})
        return {
            name.split("#", 1)[1]: value["S"]
            for name, value in item.items()
            if name.startswith("pos#")
        }

    def _save_positions(self, name: str, positions: Mapping[str, str]) -> None:
        if not positions:
            return
        names = {f"#p{i}": f"pos#{target}" for i, target in enumerate(positions)}
        values = {f":p{i}": {"S": seq} for i, seq in enumerate(positions.values())}
        assignments = ", ".join(f"#p{i} = :p{i}" for i in range(len(positions)))
        key = {"pk": {"S": f"cp|{name}"}}
        self._call(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"SET {assignments}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )

    # -- leases ------------------------------------------------------------------------
    def _lease_key(self, shard: ShardRef) -> dict[str, Any]:
        return {"pk": {"S": f"lease|{shard.table}|{shard.stream_label}|{shard.shard_id}"}}

    def acquire(self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int) -> bool:
        """Take or renew the lease if it is free, expired or ours. True when we hold it."""
        condition = "attribute_not_exists(pk) OR #expires < :now OR #owner = :me"
        return self._conditional_lease(shard, owner, now_ms + duration_ms, condition, now_ms)

    def renew(self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int) -> bool:
        return self._conditional_lease(shard, owner, now_ms + duration_ms, "#owner = :me", now_ms)

    def release(self, shard: ShardRef, owner: str) -> None:
        self._conditional_lease(shard, owner, 0, "#owner = :me", 0)

    def _conditional_lease(
        self, shard: ShardRef, owner: str, expires_ms: int, condition: str, now_ms: int
    ) -> bool:
        values: dict[str, Any] = {":me": {"S": owner}, ":exp": {"N": str(expires_ms)}}
        if ":now" in condition:
            values[":now"] = {"N": str(now_ms)}

        try:
            self._call(
                "lease",
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key=self._lease_key(shard),
                    UpdateExpression="SET #owner = :me, #expires = :exp",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#owner": "owner", "#expires": "expires"},
                    ExpressionAttributeValues=values,
                ),
            )
        except ConditionFailedError:
            return False  # someone else holds it
        return True

    def leases(self) -> dict[str, tuple[str, int]]:
        """Every lease: shard key -> (owner, expires ms)."""
        return {
            item["pk"]["S"].split("|", 1)[1]: (item["owner"]["S"], int(item["expires"]["N"]))
            for item in self.scan("lease|")
        }

    # -- workers -----------------------------------------------------------------------
    def heartbeat(
        self, worker: str, expires_ms: int, *, instance: str = "", now_ms: int = 0
    ) -> None:
        """Claim or renew ``worker|ID`` for the process ``instance`` until ``expires_ms``.

        With an ``instance``, the write is conditional: a live claim by another process
        (the same worker id started twice) raises WorkerIdInUseError, nothing written."""
        item = {"pk": {"S": f"worker|{worker}"}, "expires": {"N": str(expires_ms)}}
        if not instance:
            self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=item))
            return
        item["instance"] = {"S": instance}
        try:
            self._call(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression=_FREE_OR_MINE,
                    ExpressionAttributeNames={"#expires": "expires", "#instance": "instance"},
                    ExpressionAttributeValues={
                        ":now": {"N": str(now_ms)},
                        ":me": {"S": instance},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        except ConditionFailedError as exc:
            held = exc.item or {}
            raise WorkerIdInUseError(
                worker,
                self.region,
                holder=held.get("instance", {}).get("S", "?"),
                expires_ms=int(held.get("expires", {}).get("N", now_ms)),
                now_ms=now_ms,
            ) from None

    def live_workers(self, now_ms: int) -> list[str]:
        return sorted(
            item["pk"]["S"].split("|", 1)[1]
            for item in self.scan("worker|")
            if int(item["expires"]["N"]) >= now_ms
        )

    def put(self, item: Mapping[str, Any]) -> None:
        """Write one whole item (the runner's shard reports)."""
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=dict(item)))

    def forget_worker(self, worker: str, *, instance: str = "") -> None:
        """Remove ``worker|ID`` (with an ``instance``: only this process's claim)."""
        key = {"pk": {"S": f"worker|{worker}"}}
        if not instance:
            self._call("DeleteItem", lambda: self.client.delete_item(TableName=self.table, Key=key))
            return
        with contextlib.suppress(ConditionFailedError):  # another process's claim stays
            self._call(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="attribute_not_exists(pk) OR #instance = :me",
                    ExpressionAttributeNames={"#instance": "instance"},
                    ExpressionAttributeValues={":me": {"S": instance}},
                ),
            )

    def scan(self, prefix: str) -> list[dict[str, Any]]:
        """Every item whose key starts with ``prefix`` (strongly consistent)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": prefix}},
        }
        while True:
            page = self._call("Scan", lambda k=dict(kwargs): self.client.scan(**k))  # type: ignore[misc]
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
