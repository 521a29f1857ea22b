"""In-memory fakes of the replicator's ports."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.model import ItemKey, Tombstone
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.ports import Deadline, Prefetched, TargetResult
from dynamodb_replicator.core.replicator import BatchResult


@dataclass
class RecordingWriter:
    """Accepts every operation, or fails those at or after ``fail_from`` with ``error``."""

    name: str
    fail_from: str | None = None
    error: ReplicatorError | None = None
    received: list[WriteOp] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        applied, failed = 0, None
        for op in ops:
            if self.fail_from is not None and int(op.sequence_number) >= int(self.fail_from):
                failed = op.sequence_number if failed is None else failed
                continue
            self.received.append(op)
            applied += 1
        return TargetResult(self.name, applied, 0, failed, self.error if failed else None)

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        return Prefetched()


class WrappedWriter:
    """A target writer that hands every call to ``inner``: a test overrides what it bends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def region(self) -> str:
        return str(self.inner.region)

    def close(self) -> None:
        self.inner.close()

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        return self.inner.prefetch(table, ops, deadline=deadline)  # type: ignore[no-any-return]

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        return self.inner.apply(  # type: ignore[no-any-return]
            table, ops, deadline=deadline, written=written, prefetched=prefetched
        )


@dataclass
class FixedTombstones:
    known: dict[ItemKey, Tombstone] = field(default_factory=dict)
    asked: list[set[ItemKey]] = field(default_factory=list)

    def read(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Tombstone]:
        self.asked.append(set(keys))
        return {k: v for k, v in self.known.items() if k in keys}


class PageReplicator:
    """Base of the runner tests' stand-ins for the replicator (``runner.regions.Replicating``):
    ``process`` hands each page to ``page`` with what those tests look at."""

    def process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        *,
        from_json: bool,
        regions: Collection[str] | None = None,
        deadline: Deadline = None,
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        return self.page(records, regions, deadline)

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        """Every record applied in every target region."""
        return BatchResult({r: TargetResult(r, applied=len(records)) for r in regions or ()})

    def close(self) -> None:
        return None
