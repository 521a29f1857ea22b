"""A TargetWriter over the store port: the write protocol for a batch of one region.

Operations of one key run in order, one after the other; different keys run concurrently,
up to ``max_in_flight`` at once, so a long round trip to the region is covered by depth.
A batch takes three phases: one batched tombstone read for its puts (P0), the per-key
chains (P1, D1/D2), one batched settling read for its puts (P2/P3). Until settling
succeeded, the puts count as failed: nothing is checkpointed past a put that might still
undo a delete. A write whose request may still land (its answer lost: ``may_still_land``)
is retried at once and waited out once per batch, before settling (``core.landing``): a
batch never ends while one of its attempts may still land. In the runner the wait does not
hold the next page's writes (``WriterOptions.written_before_wait``): only settling and what
follows the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.codec import key_object
from dynamodb_replicator.core.conflicts import Conflict, met_another_write
from dynamodb_replicator.core.errors import DeadlineError, ReplicatorError, may_still_land
from dynamodb_replicator.core.landing import SendTimes, TimedStore, outlive
from dynamodb_replicator.core.model import ItemKey, Tombstone
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.ports import Deadline, Prefetched, TargetResult, deadline_passed
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.workers import Workers
from dynamodb_replicator.core.writes import Outcome, TakenBack, WriteProtocol, Written

__all__ = ["StoreWriter", "WriterOptions"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Keys per batched read: BatchGetItem's limit. Reads of more keys go out in parallel.
READ_BATCH = 100


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """How hard a writer works: writes in flight per region, and the retry schedule."""

    max_in_flight: int = defaults.MAX_WORKERS
    backoff: Backoff = field(default_factory=Backoff)
    # Set when the process shuts down: writes waiting for a retry give up at once (they
    # are reported as failed, so nothing is checkpointed past them).
    stop: threading.Event | None = field(default=None, compare=False)
    # The longest a request may still land after it started (``defaults.request_lifetime``:
    # the request timeout, twice with a role). A write whose answer was lost is waited out
    # this long from its start; ``aws.factory.build_writer`` sets it from the settings.
    request_lifetime: float = defaults.REQUEST_TIMEOUT_SECONDS
    # The runner's pipeline: ``written`` comes once the writes answered, before a lost
    # answer is waited out, so the next page's writes start then (its settling still
    # waits). False (the Lambda, the CLI): after the wait, so that a caller waiting for
    # ``written`` without a limit (the Lambda handler) also waits out every lost answer.
    written_before_wait: bool = False


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
    # Sequence numbers of the puts counted as applied (settling may take them back).
    applied_puts: set[str] = field(default_factory=set)
    taken: list[TakenBack] = field(default_factory=list)
    # Every sequence counted in applied or stale: True when applied.
    settled: dict[str, bool] = field(default_factory=dict)
    # The keys of the operations counted in stale (repair's operations share one sequence);
    # None until there is one: no list per key on the common path.
    stale_keys: list[ItemKey] | None = None
    # Until when (``Clock.elapsed``) a write whose answer was lost may still land; None:
    # none was lost. The batch settles only after it (``StoreWriter.apply``).
    landing_until: float | None = None
    landing_reason: str = ""

    def may_land(self, until: float, reason: str) -> None:
        """A write whose answer was lost may still land until ``until``."""
        if self.landing_until is None or until > self.landing_until:
            self.landing_until, self.landing_reason = until, reason

    def fail(self, sequence: str, error: ReplicatorError) -> None:
        """Record an operation that gave up; the lowest failed sequence is kept."""
        self.gave_up += 1
        self._lowest(sequence, error)

    def add(self, other: _Tally) -> None:
        self.applied += other.applied
        self.stale += other.stale
        self.retried += other.retried
        self.gave_up += other.gave_up
        self.conflicts.extend(other.conflicts)
        self.applied_puts |= other.applied_puts
        self.taken.extend(other.taken)
        self.settled.update(other.settled)
        if other.stale_keys:
            self.note_stale(*other.stale_keys)
        if other.failed is not None and other.error is not None:
            self._lowest(other.failed, other.error)
        if other.landing_until is not None:
            self.may_land(other.landing_until, other.landing_reason)

    def note_stale(self, *keys: ItemKey) -> None:
        """Name the keys of writes counted in stale."""
        if self.stale_keys is None:
            self.stale_keys = []
        self.stale_keys.extend(keys)

    def _lowest(self, sequence: str, error: ReplicatorError) -> None:
        if self.failed is None or int(sequence) < int(self.failed):
            self.failed, self.error = sequence, error


class StoreWriter:
    """A TargetWriter for one region: the write protocol, per-key order, keys in parallel."""

    def __init__(self, protocol: WriteProtocol, options: WriterOptions | None = None) -> None:
        self.protocol = protocol
        self.options = options or WriterOptions()
        # The protocol the chains call: the same, its store noting when each request starts.
        self._sends = SendTimes()
        timed = TimedStore(protocol.store, protocol.clock, self._sends)
        self._calls = dataclasses.replace(protocol, store=timed)
        self._pool = Workers(self.options.max_in_flight, name=f"writer-{protocol.region}")

    @property
    def region(self) -> str:
        return self.protocol.region

    def close(self) -> None:
        self._pool.close()

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        """Apply ``ops``: per key in order, keys concurrently. No write (nor the read that
        decides one) starts after ``deadline`` (seconds since the epoch on the protocol's
        clock); settling runs whatever the deadline. ``written`` is called between the
        writes and their settling reads; ``prefetched``: ``prefetch``'s answer for these
        ``ops`` (``TargetWriter.apply``)."""
        total = _Tally()
        if prefetched is None:
            prefetched = self.prefetch(table, ops, deadline=deadline)
        known = prefetched.tombstones
        total.retried += prefetched.retried
        groups: dict[ItemKey, list[WriteOp]] = {}
        for op in ops:
            groups.setdefault(op.key, []).append(op)
        # Every chain ends before this returns or raises (an unexpected error in one of
        # them included, ``Workers.run_all``): no write of this batch runs on unseen,
        # unsettled.
        try:
            for tally in self._pool.run_all(
                [
                    functools.partial(self._apply_chain, table, chain, known, deadline)
                    for chain in groups.values()
                ]
            ):
                total.add(tally)
        except BaseException:
            # The chains' notes went with the error; every request of theirs started
            # before now, so none lands after a lifetime from now.
            outlive(self.protocol.clock, self.protocol.clock.elapsed(), self._lifetime)
            raise
        # The writes are done (each answered, gave up, or was retried after a lost
        # answer): with ``written_before_wait`` the next page's writes may start while a
        # lost answer is waited out. They are what the chain's own later writes are to a
        # late landing (refused by its version, or found by this batch's settling, which
        # comes after the wait), and nothing passes this page before its settling: its
        # checkpoint and a lease hand-over wait for this call to return.
        early = self.options.written_before_wait
        if written is not None and early:
            try:
                written()
            except BaseException:
                # The caller may replay this page at once: its first attempts must not
                # land after the replay's settling, so the wait still comes first.
                self._outlive(total)
                raise
        self._outlive(total)
        if written is not None and not early:
            written()
        # Settling is held to no deadline: its reads and the deletes they decide are safe
        # at any time, and a put that landed late (its answer after the deadline) must still
        # be settled by its writer: the lease's next holder may have settled before it.
        self._settle(table, [op for op in ops if isinstance(op, PutVersion)], total)
        return TargetResult(
            self.region,
            total.applied,
            total.stale,
            total.failed,
            total.error,
            failed=total.gave_up,
            retried=total.retried,
            # Stale writes meeting their own region's later writes are no conflicts.
            conflicts=tuple(c for c in total.conflicts if met_another_write(c)),
            settled=dict(total.settled),
            stale_keys=frozenset(total.stale_keys or ()),
        )

    def _retrying(
        self, call: Callable[[], T], tally: _Tally, deadline: Deadline, *, writes: bool = False
    ) -> T:
        """``call`` with retries, none started after ``deadline``. A call that ``writes``
        and fails in a way that may still land is waited out first (``core.landing``)."""

        def count_retry(_error: ReplicatorError, _attempt: int) -> None:
            tally.retried += 1

        def in_time() -> T:
            if deadline_passed(deadline, self.protocol.clock):
                raise DeadlineError("no time left to start this write; it is left for a retry")
            self._sends.last = None
            self._sends.deadline = deadline
            try:
                return call()
            except Exception as exc:
                sent = self._sends.last
                # None: no write started, or a read failed after the writes answered.
                if writes and sent is not None and may_still_land(exc):
                    tally.may_land(sent + self._lifetime, str(exc))
                raise
            finally:
                self._sends.deadline = None

        return call_with_retries(
            in_time, self.options.backoff, on_retry=count_retry, stop=self.options.stop
        )

    @property
    def _lifetime(self) -> float:
        return self.options.request_lifetime

    def _outlive(self, total: _Tally) -> None:
        """Wait until no write of the batch whose answer was lost can land any more: its
        retry may have gone out at once (a late first attempt then meets its own version,
        or a later write of the key, and is refused), but settling, whose reads decide
        what a late landing left, and the batch's end (a checkpoint, a lease released, a
        Lambda invocation returning) come only after it."""
        if total.landing_until is None:
            return
        waited = outlive(self.protocol.clock, total.landing_until, 0.0)
        log.info(
            "a write whose answer was lost may still land: waited it out before settling",
            extra={
                "region": self.region,
                "reason": total.landing_reason,
                "waited": round(waited, 3),
            },
        )

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        """P0 for every put's key, the batched reads in parallel (each a round trip)."""
        tally = _Tally()
        known = self._prefetch(table, ops, tally, deadline)
        return Prefetched(known, tally.retried)

    def _prefetch(
        self, table: str, ops: Sequence[WriteOp], tally: _Tally, deadline: Deadline
    ) -> Mapping[ItemKey, Tombstone]:
        keys = sorted(self.protocol.prefetch_keys(ops), key=str)
        chunks = [keys[i : i + READ_BATCH] for i in range(0, len(keys), READ_BATCH)]

        def read(chunk: list[ItemKey]) -> tuple[Mapping[ItemKey, Tombstone], _Tally]:
            own = _Tally()
            call = functools.partial(self._calls.tombstones, table, chunk)
            try:
                return self._retrying(call, own, deadline), own
            except ReplicatorError as exc:
                # Only an optimisation: settling after the writes keeps deletes deleted.
                log.warning(
                    "tombstone read failed", extra={"region": self.region, "reason": str(exc)}
                )
                return {}, own

        known: dict[ItemKey, Tombstone] = {}
        for found, own in self._pool.run_all([functools.partial(read, c) for c in chunks]):
            known.update(found)
            tally.retried += own.retried
        return known

    def _apply_chain(
        self,
        table: str,
        ops: list[WriteOp],
        known: Mapping[ItemKey, Tombstone],
        deadline: Deadline,
    ) -> _Tally:
        tally = _Tally()
        for op in ops:
            call: Callable[[], Written]
            if isinstance(op, DeleteVersion):
                call = functools.partial(self._calls.delete, table, op)
            elif not isinstance(op, PutVersion):
                call = functools.partial(self._calls.delete_unversioned, table, op)
            try:
                if isinstance(op, PutVersion):
                    written = self._put(table, op, known.get(op.key), tally, deadline)
                else:
                    written = self._retrying(call, tally, deadline, writes=True)
            except ReplicatorError as exc:
                self._log_failure(table, op, exc)
                # Later writes of this key wait for the retry: per-key order is kept.
                tally.fail(op.sequence_number, exc)
                return tally
            applied = written.outcome is Outcome.APPLIED
            if applied:
                tally.applied += 1
            else:
                tally.stale += 1
                tally.note_stale(op.key)
            tally.settled[op.sequence_number] = applied
            if written.conflict is not None:
                tally.conflicts.append(written.conflict)
            if written.outcome is Outcome.APPLIED and isinstance(op, PutVersion):
                tally.applied_puts.add(op.sequence_number)
        return tally

    def _put(
        self,
        table: str,
        op: PutVersion,
        known: Tombstone | None,
        tally: _Tally,
        deadline: Deadline,
    ) -> Written:
        """A put: P1u first for an update, else (or when it found no item) P0 and P1. Each
        store call is checked against ``deadline`` on its own."""
        if known is None and self.protocol.tries_present_first(op):
            present = functools.partial(self._calls.put_present, table, op)
            written = self._retrying(present, tally, deadline, writes=True)
            if written is not None:
                return written
            read = functools.partial(self._calls.tombstones, table, [op.key])
            known = self._retrying(read, tally, deadline).get(op.key)
        put = functools.partial(self._calls.put, table, op, known)
        return self._retrying(put, tally, deadline, writes=True)

    def _settle(self, table: str, puts: list[PutVersion], total: _Tally) -> None:
        """P2/P3 for every put, the batched reads of different keys in parallel."""
        by_key: dict[ItemKey, list[PutVersion]] = {}
        for op in puts:
            by_key.setdefault(op.key, []).append(op)
        groups = list(by_key.values())
        chunks = [
            [op for group in groups[i : i + READ_BATCH] for op in group]
            for i in range(0, len(groups), READ_BATCH)
        ]
        settles = [functools.partial(self._settle_chunk, table, chunk) for chunk in chunks]
        for outcome in self._pool.run_all(settles):
            total.add(outcome)
        for back in total.taken:
            if back.op.sequence_number in total.applied_puts:
                total.applied -= 1
                total.stale += 1
                total.settled[back.op.sequence_number] = False
                total.note_stale(back.op.key)
            total.conflicts.append(back.conflict)

    def _settle_chunk(self, table: str, puts: list[PutVersion]) -> _Tally:
        own = _Tally()
        try:
            # Not waited out when it fails: settling's one write, P3, removes only an item
            # not newer than a delete the tombstone remembers, its condition evaluated when
            # it lands. Landing late it removes what that delete covers anyway (a put of an
            # older version, landed late), never a newer version: nothing it can undo. And
            # a failed settling fails its puts, so they are replayed and settled again.
            settle = functools.partial(self._calls.settle, table, puts)
            own.taken = self._retrying(settle, own, None)
        except ReplicatorError as exc:
            first = min(puts, key=lambda op: int(op.sequence_number))
            self._log_failure(table, first, exc)
            own.fail(first.sequence_number, exc)
        return own

    def _log_failure(self, table: str, op: WriteOp, exc: ReplicatorError) -> None:
        log.error(
            "write failed",
            extra={
                "region": self.region,
                "table": table,
                "key": key_object(op.key.to_attributes()),
                "sequence": op.sequence_number,
                "reason": str(exc),
            },
        )
