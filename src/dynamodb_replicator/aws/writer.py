"""Apply planned operations to one region with conditional writes.

Put of version V (replica write: the item plus ``__originRegion`` and the marker):
  1. PutItem if the item exists and is older than V (ALL_OLD returned either way: the
     replaced or the newer version goes into the conflict report);
  2. only when the item is absent: a transaction that puts it if it is still absent and
     the tombstone table remembers no newer delete, so a late, older version cannot
     resurrect a deleted item.
  A change the source saw as an INSERT starts with 2, since the target most likely lacks
  the item too.
Delete of version V:
  1. remember it: PutItem on the tombstone table unless it remembers a newer delete;
  2. DeleteItem if the stored item is not newer than V.
A failed condition means "already newer": counted as stale, never retried.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamodb_replicator.aws.errors import error_code, translate
from dynamodb_replicator.aws.tombstones import DEFAULT_SUFFIX, tombstone_table
from dynamodb_replicator.core.conditions import Exists, Path, all_of, negate, render
from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome, overwrote_concurrent
from dynamodb_replicator.core.errors import ReplicatorError, ServerError, ThrottledError
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.policy import ConflictPolicy, stored_version
from dynamodb_replicator.core.ports import Clock, TargetResult
from dynamodb_replicator.core.retry import Backoff, call_with_retries

__all__ = ["DynamoWriter", "Outcome", "WriterOptions", "Written"]

log = logging.getLogger(__name__)

DAY = 24 * 3600


class Outcome(Enum):
    APPLIED = "applied"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Written:
    """One operation's outcome, and the conflict it met, if any."""

    outcome: Outcome
    conflict: Conflict | None = None


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
        total = _Tally()
        failed: str | None = None
        error: ReplicatorError | None = None
        for future in futures:
            tally = future.result()
            total.add(tally)
            if tally.failed is not None and (failed is None or int(tally.failed) < int(failed)):
                failed, error = tally.failed, tally.error
        return TargetResult(
            self._region,
            total.applied,
            total.stale,
            failed,
            error,
            failed=total.gave_up,
            retried=total.retried,
            conflicts=tuple(total.conflicts),
        )

    def _apply_group(self, table: str, ops: list[WriteOp]) -> _Tally:
        tally = _Tally()

        def count_retry(_error: ReplicatorError, _attempt: int) -> None:
            tally.retried += 1

        for op in ops:
            try:
                written = call_with_retries(
                    functools.partial(self.write, table, op),
                    self.options.backoff,
                    on_retry=count_retry,
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
                tally.failed, tally.error, tally.gave_up = op.sequence_number, exc, 1
                return tally
            if written.outcome is Outcome.APPLIED:
                tally.applied += 1
            else:
                tally.stale += 1
            if written.conflict is not None:
                tally.conflicts.append(written.conflict)
        return tally

    def write(self, table: str, op: WriteOp) -> Written:
        """One operation, one attempt; raises translated errors."""
        try:
            if isinstance(op, PutVersion):
                return self._put(table, op)
            return self._delete(table, op)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self._region, f"write to {table}") from exc

    def _conflict(
        self,
        outcome: ConflictOutcome,
        op: WriteOp,
        held: Mapping[str, Any] | None,
        *,
        deleted: bool = False,
    ) -> Conflict:
        return Conflict(
            outcome,
            op.key,
            self._region,
            "put" if isinstance(op, PutVersion) else "delete",
            op.version,
            stored_version(held, self._region, self.fields),
            op.sequence_number,
            other_deleted=deleted,
            change_item=op.image if isinstance(op, PutVersion) else None,
            other_item=held,
        )

    def _put(self, table: str, op: PutVersion) -> Written:
        item = dict(op.image)
        item[self.fields.origin] = {"S": op.version.origin}
        item[self.fields.marker] = {"N": op.version.raw_timestamp}
        if op.likely_new:
            written = self._insert(table, op, item)
            if written is not None:
                return written
        # The item keeps appearing and vanishing only under a race with concurrent inserts
        # and deletes of this key; a few rounds settle it, else the retry does.
        for _ in range(3):
            written = self._replace(table, op, item)
            if written is None:
                written = self._insert(table, op, item)
            if written is not None:
                return written
        raise ServerError(f"{op.key} kept changing between writes", region=self._region)

    def _replace(self, table: str, op: PutVersion, item: dict[str, Any]) -> Written | None:
        """Put over an existing, older item; None when the item is absent."""
        older = self.policy.stored_is_older(op.version, self._region, strict=False)
        condition = render(all_of(Exists(Path(op.key.names()[0])), older))
        assert condition is not None
        try:
            response = self.client.put_item(
                TableName=table,
                Item=item,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **condition.as_kwargs(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            held = exc.response.get("Item")
            if not held:
                return None
            return Written(Outcome.STALE, self._conflict(ConflictOutcome.LOST, op, held))
        held = response.get("Attributes")
        version = stored_version(held, self._region, self.fields)
        if overwrote_concurrent(self.policy, version, op.version, op.replaces):
            return Written(Outcome.APPLIED, self._conflict(ConflictOutcome.WON, op, held))
        return Written(Outcome.APPLIED)

    def _insert(self, table: str, op: PutVersion, item: dict[str, Any]) -> Written | None:
        """Put where the item is absent and no newer delete is remembered (one transaction);
        None when the item exists."""
        tomb_condition = render(self.policy.stored_is_older(op.version, self._region, strict=True))
        absent = render(negate(Exists(Path(op.key.names()[0]))))
        assert tomb_condition is not None and absent is not None
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": tombstone_table(table, self.options.tombstone_suffix),
                            "Key": op.key.to_attributes(),
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                            **tomb_condition.as_kwargs(),
                        }
                    },
                    {"Put": {"TableName": table, "Item": item, **absent.as_kwargs()}},
                ]
            )
            return Written(Outcome.APPLIED)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons", [])
            codes = [r.get("Code") for r in reasons]
            if codes and codes[0] == "ConditionalCheckFailed":
                tomb = reasons[0].get("Item")
                return Written(
                    Outcome.STALE, self._conflict(ConflictOutcome.LOST, op, tomb, deleted=True)
                )
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return None
            if "ThrottlingError" in codes or "ProvisionedThroughputExceeded" in codes:
                raise ThrottledError(
                    f"transaction throttled: {codes}", region=self._region
                ) from exc
            if "TransactionConflict" in codes:
                raise ServerError(f"transaction conflict: {codes}", region=self._region) from exc
            raise

    def _delete(self, table: str, op: DeleteVersion) -> Written:
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
                TableName=table,
                Key=op.key.to_attributes(),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **not_newer.as_kwargs(),
            )
            return Written(Outcome.APPLIED)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            held = exc.response.get("Item")
            return Written(Outcome.STALE, self._conflict(ConflictOutcome.LOST, op, held))


@dataclass(slots=True)
class _Tally:
    """What one key's operations (or a whole batch) came to."""

    applied: int = 0
    stale: int = 0
    retried: int = 0
    gave_up: int = 0
    failed: str | None = None
    error: ReplicatorError | None = None
    conflicts: list[Conflict] = field(default_factory=list)

    def add(self, other: _Tally) -> None:
        self.applied += other.applied
        self.stale += other.stale
        self.retried += other.retried
        self.gave_up += other.gave_up
        self.conflicts.extend(other.conflicts)
