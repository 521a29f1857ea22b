"""Apply planned operations to one region with conditional writes.

Put of version V (replica write: the item plus ``__originRegion`` and the marker):
  1. PutItem if the item exists and is older than V (ALL_OLD returned on failure);
  2. only when the item is absent: a transaction that also checks the tombstone table,
     so a late, older version cannot resurrect a deleted item.
  The transaction alone is the full rule; a change the source saw as an INSERT starts
  with it, since the target most likely lacks the item too.
Delete of version V:
  1. remember it: PutItem on the tombstone table unless it remembers a newer delete;
  2. DeleteItem if the stored item is not newer than V.
A failed condition means "already newer": counted as stale, never retried.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.aws.tombstones import DEFAULT_SUFFIX, tombstone_table
from dynamodb_replicator.conditions import Exists, Path, all_of, render
from dynamodb_replicator.conflict import ConflictPolicy
from dynamodb_replicator.errors import ReplicatorError, ServerError, ThrottledError
from dynamodb_replicator.model import SystemAttributes
from dynamodb_replicator.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.ports import Clock, TargetResult
from dynamodb_replicator.retry import Backoff, call_with_retries

__all__ = ["DynamoWriter", "Outcome", "WriterOptions"]

log = logging.getLogger(__name__)

DAY = 24 * 3600


class Outcome(Enum):
    APPLIED = "applied"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class WriterOptions:
    tombstone_suffix: str = DEFAULT_SUFFIX
    # Stream retention (24 h) plus a day of margin: no record older than this can arrive.
    tombstone_ttl_seconds: int = 2 * DAY
    max_workers: int = 16
    backoff: Backoff = field(default_factory=Backoff)
    # Set when the process shuts down: writes waiting for a retry give up at once (they
    # are reported as failed, so nothing is checkpointed past them).
    stop: threading.Event | None = field(default=None, compare=False)


class DynamoWriter:
    """A TargetWriter for one region: per-key order, different keys in parallel."""

    def __init__(
        self,
        region: str,
        client: Any,
        *,
        policy: ConflictPolicy,
        fields: SystemAttributes,
        clock: Clock,
        options: WriterOptions | None = None,
    ) -> None:
        self._region = region
        self.client = client
        self.policy = policy
        self.fields = fields
        self.clock = clock
        self.options = options or WriterOptions()
        self._pool = ThreadPoolExecutor(max_workers=self.options.max_workers)

    @property
    def region(self) -> str:
        return self._region

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def apply(self, table: str, ops: Sequence[WriteOp]) -> TargetResult:
        groups: dict[object, list[WriteOp]] = {}
        for op in ops:
            groups.setdefault(op.key, []).append(op)
        futures = [self._pool.submit(self._apply_group, table, group) for group in groups.values()]
        applied = stale = 0
        failed: str | None = None
        error: ReplicatorError | None = None
        for future in futures:
            group_applied, group_stale, group_failed, group_error = future.result()
            applied += group_applied
            stale += group_stale
            if group_failed is not None and (failed is None or int(group_failed) < int(failed)):
                failed, error = group_failed, group_error
        return TargetResult(self._region, applied, stale, failed, error)

    def _apply_group(
        self, table: str, ops: list[WriteOp]
    ) -> tuple[int, int, str | None, ReplicatorError | None]:
        applied = stale = 0
        for op in ops:
            try:
                outcome = call_with_retries(
                    functools.partial(self.write, table, op),
                    self.options.backoff,
                    stop=self.options.stop,
                )
            except ReplicatorError as exc:
                log.error(
                    "write failed",
                    extra={
                        "region": self._region,
                        "table": table,
                        "key": str(op.key),
                        "sequence": op.sequence_number,
                        "reason": str(exc),
                    },
                )
                # Later writes of this key wait for the retry: per-key order is kept.
                return applied, stale, op.sequence_number, exc
            if outcome is Outcome.APPLIED:
                applied += 1
            else:
                stale += 1
        return applied, stale, None, None

    def write(self, table: str, op: WriteOp) -> Outcome:
        """One operation, one attempt; raises translated errors."""
        try:
            if isinstance(op, PutVersion):
                return self._put(table, op)
            return self._delete(table, op)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self._region, f"write to {table}") from exc

    def _put(self, table: str, op: PutVersion) -> Outcome:
        item = dict(op.image)
        item[self.fields.origin] = {"S": op.version.origin}
        item[self.fields.marker] = {"N": op.version.raw_timestamp}
        if op.likely_new:
            return self._put_checking_tombstone(table, op, item)
        older = self.policy.stored_is_older(op.version, self._region, strict=False)
        exists = Exists(Path(op.key.names()[0]))
        condition = render(all_of(exists, older))
        assert condition is not None
        try:
            self.client.put_item(
                TableName=table,
                Item=item,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition.as_kwargs(),
            )
            return Outcome.APPLIED
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            if exc.response.get("Item"):
                return Outcome.STALE  # present and not older
        return self._put_checking_tombstone(table, op, item)

    def _put_checking_tombstone(self, table: str, op: PutVersion, item: dict[str, Any]) -> Outcome:
        tomb_condition = render(self.policy.stored_is_older(op.version, self._region, strict=True))
        put_condition = render(self.policy.stored_is_older(op.version, self._region, strict=False))
        assert tomb_condition is not None and put_condition is not None
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": tombstone_table(table, self.options.tombstone_suffix),
                            "Key": op.key.to_attributes(),
                            **tomb_condition.as_kwargs(),
                        }
                    },
                    {"Put": {"TableName": table, "Item": item, **put_condition.as_kwargs()}},
                ]
            )
            return Outcome.APPLIED
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                return Outcome.STALE
            if "ThrottlingError" in reasons or "ProvisionedThroughputExceeded" in reasons:
                raise ThrottledError(
                    f"transaction throttled: {reasons}", region=self._region
                ) from exc
            if "TransactionConflict" in reasons:
                raise ServerError(f"transaction conflict: {reasons}", region=self._region) from exc
            raise

    def _delete(self, table: str, op: DeleteVersion) -> Outcome:
        not_newer = render(self.policy.stored_is_older(op.version, self._region, strict=False))
        assert not_newer is not None
        tomb = op.key.to_attributes()
        tomb[self.fields.timestamp] = {"N": op.version.raw_timestamp}
        tomb[self.fields.origin] = {"S": op.version.origin}
        tomb[self.fields.marker] = {"N": op.version.raw_timestamp}
        tomb[self.fields.deleted_in] = {"S": op.deleted_in}
        expires = int(self.clock.now()) + self.options.tombstone_ttl_seconds
        tomb[self.fields.expires_at] = {"N": str(expires)}
        try:
            self.client.put_item(
                TableName=tombstone_table(table, self.options.tombstone_suffix),
                Item=tomb,
                **not_newer.as_kwargs(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise  # a newer delete is remembered already: nothing to record
        try:
            self.client.delete_item(
                TableName=table, Key=op.key.to_attributes(), **not_newer.as_kwargs()
            )
            return Outcome.APPLIED
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return Outcome.STALE
