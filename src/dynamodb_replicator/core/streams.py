"""Stream and checkpoint ports and their value types.

A stream is a tree of shards; each shard is read page by page from an iterator. Iterators
expire and old records are trimmed: both are normal events of a reader, so they have their
own error types. Checkpoints are kept per (shard, target region); ``END`` marks a shard that
a target has finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dynamodb_replicator.core.errors import ReplicatorError

__all__ = [
    "END",
    "NO_SEQUENCE",
    "CheckpointStore",
    "ExpiredIteratorError",
    "LeaseLostError",
    "Page",
    "Shard",
    "ShardRef",
    "StreamSource",
    "TrimmedDataError",
]

END = "END"

NO_SEQUENCE = "0"
"""The sequence number of a write no stream record carries (repair, backfill). It sorts
before every real one, so "the earliest failed sequence number" stays well defined."""


class ExpiredIteratorError(ReplicatorError):
    """The shard iterator is older than 15 minutes; take a new one."""

    retryable = True


class LeaseLostError(ReplicatorError):
    """A checkpoint save was refused: another worker holds the shard's lease now. The
    worker that gets it stops reading the shard."""


class TrimmedDataError(ReplicatorError):
    """The requested position is older than the stream's retention."""


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_id: str | None
    starting_sequence: str
    ending_sequence: str | None  # set once the shard is closed

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None


@dataclass(frozen=True, slots=True)
class Page:
    records: Sequence[dict[str, Any]]
    next_iterator: str | None  # None: the shard is closed and fully read


@dataclass(frozen=True, slots=True)
class ShardRef:
    table: str
    stream_arn: str
    shard_id: str

    @property
    def stream_label(self) -> str:
        return self.stream_arn.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.table}/{self.stream_label}/{self.shard_id}"


class StreamSource(Protocol):
    """Reads one region's stream shards."""

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str: ...

    def read(self, iterator: str, limit: int = 1000) -> Page: ...


class CheckpointStore(Protocol):
    """Where each target's position in a shard is kept. Only the shard's lease holder saves
    (others get LeaseLostError), and positions only move forward; END is final."""

    def load(self, shard: ShardRef) -> dict[str, str]: ...

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None: ...
