"""The replicator's exceptions: one small tree, each saying whether a retry can help.

    ReplicatorError                 .retryable = False
    ├── ConfigError                 bad settings; fix and restart
    │   └── AssumeRoleError         a region's role (another account) could not be assumed
    ├── RecordError                 a stream record we cannot replicate as it is
    │   ├── MalformedRecordError    not a DynamoDB stream record, unknown eventName, ...
    │   ├── StreamViewTypeError     the stream is not NEW_AND_OLD_IMAGES
    │   └── MissingTimestampError   no usable ``__timestamp`` on the item
    ├── DeadlineError               no time left to start a write (Lambda, lease); retry later
    ├── TargetError                 a region did not accept a request
    │   ├── RetryableTargetError    .retryable = True
    │   │   ├── ThrottledError      throttling / provisioned throughput exceeded
    │   │   ├── UnreachableError    connection refused, timeouts, DNS; .request_sent
    │   │   └── ServerError         HTTP 5xx, transaction conflicts
    │   ├── ConditionFailedError    a write's condition was false; .item: the item it met
    │   ├── TransactionCanceledError  a transaction's condition was false; .reasons
    │   ├── NotFoundError           the table (function, role, ...) does not exist
    │   ├── ResourceInUseError      it exists already, or is being changed
    │   ├── AccessDeniedError       the credentials may not do this
    │   ├── ItemRejectedError       the region refuses this item itself (too large, invalid)
    │   └── (plain TargetError)     validation and anything else
    ├── ExpiredIteratorError        (core.streams) .retryable = True: take a new iterator
    ├── LeaseLostError              (core.streams) a checkpoint save by a non-holder, refused
    └── TrimmedDataError            (core.streams) the records are gone: start at TRIM_HORIZON

The outcome types (condition failed, not found, in use, iterator expired, data trimmed)
are normal answers some callers expect and catch; uncaught, they are plain failures.
Foreign (botocore) errors are translated into this tree once, in ``aws.errors``.
``may_still_land`` says which failures of a write leave it possibly applied later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AccessDeniedError",
    "AssumeRoleError",
    "CancellationReason",
    "ConditionFailedError",
    "ConfigError",
    "DeadlineError",
    "ItemRejectedError",
    "MalformedRecordError",
    "MissingTimestampError",
    "NotFoundError",
    "RecordError",
    "ReplicatorError",
    "ResourceInUseError",
    "RetryableTargetError",
    "ServerError",
    "StreamViewTypeError",
    "TargetError",
    "ThrottledError",
    "TransactionCanceledError",
    "UnreachableError",
    "may_still_land",
]


class ReplicatorError(Exception):
    """Base of every error the replicator raises on purpose."""

    retryable: bool = False


class ConfigError(ReplicatorError):
    """The configuration or environment is wrong; nothing was replicated."""


class AssumeRoleError(ConfigError):
    """STS refused the role of a region in another account (not allowed, not trusted, no
    such role, wrong external ID): every call into ``region`` fails until it is fixed."""

    def __init__(self, message: str, *, region: str, role_arn: str) -> None:
        super().__init__(message)
        self.region = region
        self.role_arn = role_arn


class RecordError(ReplicatorError):
    """A stream record that cannot be replicated as it is."""


class MalformedRecordError(RecordError):
    """The record is not a DynamoDB stream record we understand."""


class StreamViewTypeError(RecordError):
    """The stream does not carry both images; replication needs NEW_AND_OLD_IMAGES."""


class MissingTimestampError(RecordError):
    """The item has no usable version timestamp (missing, or not a Number)."""


class DeadlineError(ReplicatorError):
    """The caller's deadline came before a write request could start: that request was not
    sent (a protocol step's earlier writes may have been; the replay finishes the step, as
    after a crash there), and the record is left for a later attempt."""


class TargetError(ReplicatorError):
    """A target region did not accept a write."""

    def __init__(self, message: str, *, region: str = "") -> None:
        super().__init__(message)
        self.region = region


class RetryableTargetError(TargetError):
    retryable = True


class ThrottledError(RetryableTargetError):
    """The target throttled the request."""


class UnreachableError(RetryableTargetError):
    """The target's endpoint could not be reached in time. ``request_sent`` is False only
    when the request surely never left (connection refused, connect timeout, DNS failure,
    a transport that refused to send); else its answer was lost and it may still apply."""

    def __init__(self, message: str, *, region: str = "", request_sent: bool = True) -> None:
        super().__init__(message, region=region)
        self.request_sent = request_sent


class ServerError(RetryableTargetError):
    """The target failed on its side (HTTP 5xx, transaction conflict)."""


class ConditionFailedError(TargetError):
    """A conditional write found its condition false: a normal outcome ("already newer",
    "lease taken"). ``item`` is the item the condition met, when the request asked for it
    (ReturnValuesOnConditionCheckFailure=ALL_OLD) and one existed."""

    def __init__(
        self, message: str, *, region: str = "", item: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, region=region)
        self.item = item


@dataclass(frozen=True, slots=True)
class CancellationReason:
    """Why one operation of a canceled transaction failed (code None: it did not)."""

    code: str | None
    item: Mapping[str, Any] | None = None


class TransactionCanceledError(TargetError):
    """A transaction was canceled because a condition was false; ``reasons`` has one entry
    per operation, in request order."""

    def __init__(
        self, message: str, *, region: str = "", reasons: Sequence[CancellationReason] = ()
    ) -> None:
        super().__init__(message, region=region)
        self.reasons = tuple(reasons)

    @property
    def codes(self) -> tuple[str | None, ...]:
        return tuple(reason.code for reason in self.reasons)


class NotFoundError(TargetError):
    """The resource (table, stream, function, role) does not exist."""


class ResourceInUseError(TargetError):
    """The resource exists already (create) or is being changed."""


class AccessDeniedError(TargetError):
    """The credentials are valid but not allowed to do this."""


class ItemRejectedError(TargetError):
    """The region refused the request for what it holds (ValidationException: an item too
    large, an invalid attribute): the same record fails the same way on every retry."""


def may_still_land(exc: BaseException) -> bool:
    """Did a write that raised ``exc`` perhaps go out, so that the table may still apply it
    up to a request lifetime after it was sent (docs/concepts/guarantees.md, "Timing and
    clocks")? True for a lost answer (``UnreachableError`` with ``request_sent``, a read
    timeout, a dropped connection), a server error (HTTP 5xx: the write may have been
    applied, or may be yet) and anything not in this tree (a bug between send and
    answer); False for answers that say the write was not applied (throttled, condition
    false, refused) and for a write that never started (``DeadlineError``)."""
    if isinstance(exc, UnreachableError):
        return exc.request_sent
    if isinstance(exc, ServerError):
        return True
    return not isinstance(exc, ReplicatorError)
