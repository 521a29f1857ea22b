"""The replicator's ports: the small interfaces the pure core and the batch processor use."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.model import ItemKey, Tombstone
from dynamodb_replicator.core.plan import WriteOp

__all__ = [
    "Clock",
    "ConflictLog",
    "CountingNonces",
    "Deadline",
    "NonceSource",
    "TargetResult",
    "TargetWriter",
    "TombstoneReader",
    "deadline_at",
    "deadline_passed",
]

# No write starts after it (epoch seconds), or None. A callable is asked before each write,
# given the check's one wall reading (``deadline_passed``): the runner's lease deadline moves
# on when the lease is renewed during a page, and its monotonic bound is turned into wall
# time against that very reading (``Lease.fence``), so no second wall reading exists for a
# clock step to land between.
Deadline = float | Callable[[float], float] | None


def deadline_at(deadline: Deadline, now: float) -> float | None:
    """The deadline as it stands at ``now``, a wall reading of the clock it is checked on."""
    return deadline(now) if callable(deadline) else deadline


def deadline_passed(deadline: Deadline, clock: Clock) -> bool:
    """Whether no write may start now: one wall reading of ``clock``, compared with the
    deadline as it stands at that reading. A callable deadline computes its monotonic bound
    against the same reading (``Lease.fence``: the comparison then reduces to the monotonic
    reading alone), so wall-clock steps, however many and wherever they land, cannot
    stretch it past that bound: only the wall part (the lease's stored expiry, which the
    keeper lowers after a set-back) moves with them."""
    if deadline is None:
        return False
    now = clock.now()
    limit = deadline_at(deadline, now)
    return limit is not None and now >= limit


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What one region did with its operations of a batch.

    ``failed_sequence`` is the lowest SequenceNumber whose write did not succeed (None when
    every operation was applied or rejected as stale); ``error`` says why. ``failed`` counts
    the operations that gave up after their retries (``retried`` counts the retries);
    ``conflicts`` lists the stale changes and those that overwrote a concurrent version.
    ``settled`` names the SequenceNumbers counted in ``applied`` and ``stale`` (so a caller
    that replays a batch can count each record once; empty when the writer does not say).
    ``stale_keys`` names the keys of the operations counted in ``stale`` (settling's
    take-backs included), so a caller whose operations carry no stream sequence number
    (repair) can tell which key's write was refused; empty when the writer does not say.
    """

    region: str
    applied: int = 0
    stale: int = 0
    failed_sequence: str | None = None
    error: ReplicatorError | None = None
    failed: int = 0
    retried: int = 0
    conflicts: tuple[Conflict, ...] = ()
    settled: Mapping[str, bool] = field(default_factory=dict, compare=False)  # seq -> applied?
    stale_keys: frozenset[ItemKey] = field(default_factory=frozenset, compare=False)

    def lost_and_won(self) -> tuple[int, int]:
        """How many of ``conflicts`` lost, and how many won over a concurrent version."""
        lost = sum(c.outcome is ConflictOutcome.LOST for c in self.conflicts)
        return lost, len(self.conflicts) - lost


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What a region's reads before its writes found (P0): the deletes it remembers for
    the keys read, and the retries those reads took."""

    tombstones: Mapping[ItemKey, Tombstone] = field(default_factory=dict)
    retried: int = 0


class TargetWriter(Protocol):
    """Applies planned operations to one region, per-key in order, keys in parallel."""

    @property
    def region(self) -> str: ...

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        """Apply ``ops``; none is started after ``deadline`` (epoch seconds of the
        writer's clock): those are reported as failed, to be replayed later.

        ``prefetched``: what ``prefetch`` of the same ``ops`` found (None: ``apply``
        reads it first itself).

        ``written`` is called once, as soon as every write of ``ops`` is done (landed,
        stale or given up) and only their settling is left, so that a caller can start the
        next batch's writes while this one settles (it may not be called when ``apply``
        raises). A write whose answer was lost is done once it was waited out, or, for the
        runner's writers (``WriterOptions.written_before_wait``), once its retry answered:
        its first attempt may still land then, and settling waits for that."""
        ...

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        """The reads that decide ``ops``' writes (P0), none started after ``deadline``;
        a read that fails leaves its keys out (it only saves writes)."""
        ...

    def close(self) -> None: ...


class TombstoneReader(Protocol):
    """Reads the deletes a region remembers, for the given keys."""

    def read(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Tombstone]: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def elapsed(self) -> float:
        """Seconds from an arbitrary origin on a monotonic clock, to measure a wait with
        (never to compare with a time stored elsewhere): a wall clock's step (NTP, an
        operator) neither cuts it short nor stretches it."""
        ...

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Let ``seconds`` go by on this clock, or less once ``stop`` is set: True when it
        is set (shutting down). Every wait of a retry goes through here, so that a test's
        clock decides how long it takes (one clock)."""
        ...


class ConflictLog(Protocol):
    """Receives the conflicts of each batch of ``source``'s stream for ``table``."""

    def record(self, table: str, source: str, conflicts: Sequence[Conflict]) -> None: ...


class NonceSource(Protocol):
    """Ids that are never given twice, by any writer of any process (replica nonces)."""

    def nonce(self) -> str:
        """A fresh id."""
        ...


class CountingNonces:
    """``prefix`` followed by a counter shared by every instance in the process. The shell
    passes a prefix unique to the process (``dynamodb_replicator.ids``); the pure core
    reads no randomness."""

    _counter = itertools.count()  # next() on a count is atomic in CPython

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def nonce(self) -> str:
        """The prefix and the next value of the process's counter (hex)."""
        return f"{self.prefix}{next(self._counter):x}"
