"""The replicator's exceptions: one small tree, each saying whether a retry can help.

    ReplicatorError                 .retryable = False
    ├── ConfigError                 bad settings; fix and restart
    ├── RecordError                 a stream record we cannot replicate as it is
    │   ├── MalformedRecordError    not a DynamoDB stream record, unknown eventName, ...
    │   ├── StreamViewTypeError     the stream is not NEW_AND_OLD_IMAGES
    │   └── MissingTimestampError   no usable ``__timestamp`` on the item
    ├── DeadlineError               no time left to start a write (Lambda, lease); retry later
    └── TargetError                 a region did not accept a write
        ├── RetryableTargetError    .retryable = True
        │   ├── ThrottledError      throttling / provisioned throughput exceeded
        │   ├── UnreachableError    connection refused, timeouts, DNS
        │   └── ServerError         HTTP 5xx, transaction conflicts
        └── (plain TargetError)     access denied, missing table, validation

Foreign (botocore) errors are translated into this tree once, in ``aws.errors``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeadlineError",
    "MalformedRecordError",
    "MissingTimestampError",
    "RecordError",
    "ReplicatorError",
    "RetryableTargetError",
    "ServerError",
    "StreamViewTypeError",
    "TargetError",
    "ThrottledError",
    "UnreachableError",
]


class ReplicatorError(Exception):
    """Base of every error the replicator raises on purpose."""

    retryable: bool = False


class ConfigError(ReplicatorError):
    """The configuration or environment is wrong; nothing was replicated."""


class RecordError(ReplicatorError):
    """A stream record that cannot be replicated as it is."""


class MalformedRecordError(RecordError):
    """The record is not a DynamoDB stream record we understand."""


class StreamViewTypeError(RecordError):
    """The stream does not carry both images; replication needs NEW_AND_OLD_IMAGES."""


class MissingTimestampError(RecordError):
    """The item has no usable version timestamp (missing, or not a Number)."""


class DeadlineError(ReplicatorError):
    """The caller's deadline came before the write could start; nothing was written by
    this attempt, and the record is left for a later one."""


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
    """The target's endpoint could not be reached in time."""


class ServerError(RetryableTargetError):
    """The target failed on its side (HTTP 5xx, transaction conflict)."""
