"""Apply one batch of stream records of a source region to every region.

The Lambda handler and the standalone runner both call ``Replicator.process``; the result
says, per region, how far the batch got, so the caller can resume from the lowest failure.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.codec import decode_record, record_key, sequence_number_of
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.contract import Violation, find_violations
from dynamodb_replicator.core.errors import MissingTimestampError, RecordError, ReplicatorError
from dynamodb_replicator.core.fanout import Handover, WrittenGate
from dynamodb_replicator.core.model import Change, Operation, SystemAttributes
from dynamodb_replicator.core.plan import plan_changes
from dynamodb_replicator.core.policy import ConflictPolicy
from dynamodb_replicator.core.ports import (
    ConflictLog,
    Deadline,
    Prefetched,
    TargetResult,
    TargetWriter,
    TombstoneReader,
)
from dynamodb_replicator.core.residency import Residency
from dynamodb_replicator.core.scoping import project

__all__ = ["BatchResult", "MissingTimestamp", "RecordFailure", "Replicator"]

log = logging.getLogger(__name__)


T = TypeVar("T")


class MissingTimestamp(Enum):
    """What to do with a record whose item has no usable ``__timestamp``."""

    FAIL = "fail"  # report the record as failed: Lambda/the runner retry it, nothing moves on
    SKIP = "skip"  # log an error with the key, count it as skipped, move on


@dataclass(frozen=True, slots=True)
class RecordFailure:
    sequence_number: str
    error: ReplicatorError


def _lowest(sequences: Iterable[str | None]) -> str | None:
    present = [s for s in sequences if s is not None]
    return min(present, key=int) if present else None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-region outcome of a batch, plus the records that could not be decoded."""

    targets: Mapping[str, TargetResult]
    record_failures: tuple[RecordFailure, ...] = ()
    echoes: int = 0
    skipped: int = 0
    lost_locally: tuple[Conflict, ...] = ()
    records: int = field(default=0)
    violations: tuple[Violation, ...] = ()  # the batch's contract violations (core.contract)
    # Per region, the SequenceNumbers of the puts withheld from it by residency (sent as
    # deletes of their version instead: core.scoping).
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def conflicts(self) -> list[Conflict]:
        """Every conflict of the batch: the source's own lost writes, then each region's."""
        found = list(self.lost_locally)
        for result in self.targets.values():
            found.extend(result.conflicts)
        return found

    def failed_count(self, region: str) -> int:
        """Operations for ``region`` that gave up (at least 1 when the batch failed there,
        also when the failure was a record that could not be decoded)."""
        if self.failed_sequence(region) is None:
            return 0
        outcome = self.targets.get(region)
        return max(1, outcome.failed if outcome else 0)

    def failed_sequence(self, region: str | None = None) -> str | None:
        """Lowest failed SequenceNumber for ``region`` (None: over all regions)."""
        regions = self.targets.values() if region is None else [self.targets[region]]
        return _lowest(
            [f.sequence_number for f in self.record_failures] + [t.failed_sequence for t in regions]
        )


class Replicator:
    """Decode, plan and apply stream records of ``source`` to every region in ``writers``."""

    def __init__(
        self,
        *,
        source: str,
        writers: Mapping[str, TargetWriter],
        tombstones: TombstoneReader,
        policy: ConflictPolicy,
        fields: SystemAttributes,
        missing_timestamp: MissingTimestamp = MissingTimestamp.FAIL,
        conflict_log: ConflictLog | None = None,
        residency: Residency | None = None,
    ) -> None:
        if source not in writers:
            raise ValueError("the source region needs a writer too (it repairs itself)")
        self.source = source
        self.writers = dict(writers)
        self.tombstones = tombstones
        self.policy = policy
        self.fields = fields
        self.missing_timestamp = missing_timestamp
        self.conflict_log = conflict_log
        self.residency = residency or Residency()
        # A batch per region for each page of a shard in flight (runner/pipeline.py). No
        # batch waits for another: a page waiting for the one before it waits in its own
        # thread.
        in_flight = defaults.PAGES_IN_FLIGHT
        self._pool = ThreadPoolExecutor(max_workers=max(in_flight, in_flight * len(writers)))

    def close(self) -> None:
        """Stop the worker threads of this replicator and of its writers."""
        self._pool.shutdown(wait=True)
        for writer in self.writers.values():
            writer.close()

    def _decode(
        self, records: Sequence[Mapping[str, Any]], from_json: bool
    ) -> tuple[list[Change], list[RecordFailure], int]:
        changes: list[Change] = []
        failures: list[RecordFailure] = []
        skipped = 0
        # A record's sequence number is read by decode_record; here only for a record that
        # failed (a record without one raises MalformedRecordError from here, as before).
        for record in records:
            try:
                changes.append(
                    decode_record(
                        record, source_region=self.source, fields=self.fields, from_json=from_json
                    )
                )
            except MissingTimestampError as exc:
                sequence = sequence_number_of(record)
                if self.missing_timestamp is MissingTimestamp.SKIP:
                    skipped += 1
                    where = self._where(record, sequence, from_json)
                    log.error("skipped record", extra={**where, "reason": str(exc)})
                else:
                    failures.append(RecordFailure(sequence, exc))
            except RecordError as exc:
                failures.append(RecordFailure(sequence_number_of(record), exc))
        if not failures:
            return changes, failures, skipped
        by_sequence = {sequence_number_of(record): record for record in records}
        for failure in failures:
            failed = by_sequence.get(failure.sequence_number)
            where = self._where(failed, failure.sequence_number, from_json)
            log.error("record cannot be replicated", extra={**where, "reason": str(failure.error)})
        return changes, failures, skipped

    def _where(
        self, record: Mapping[str, Any] | None, sequence: str, from_json: bool
    ) -> dict[str, Any]:
        """A record's log context: source region, sequence and key (when it has one)."""
        key = None if record is None else record_key(record, from_json=from_json)
        return {"region": self.source, "sequence": sequence, "key": key}

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
        """Replicate ``records`` (one shard's, in order) of ``table`` in the source region
        to ``regions`` (default: every region with a writer). No write starts after
        ``deadline`` (epoch seconds); what was not done is reported as failed.
        ``logged`` tells the conflicts an earlier attempt of these records logged already
        (a replayed page logs each conflict once). ``written`` is called once, when every
        region's writes are done and only their settling reads are left (at the latest
        when this returns or raises). ``ready`` (the runner's) is called, in the calling
        thread, before each region's writes are handed over, once that region's reads
        are done (``TargetWriter.prefetch``): its writes wait until it returns; when it
        raises, no region's writes start any more, those started end, and this raises
        it.

        Raises MalformedRecordError only when a record has no SequenceNumber (it cannot be
        reported on its own); every other problem is in the result.
        """
        gate = WrittenGate(written)
        try:
            return self._process(
                table,
                records,
                from_json=from_json,
                regions=regions,
                deadline=deadline,
                logged=logged,
                gate=gate,
                ready=ready,
            )
        finally:
            gate.open()

    def _process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        *,
        from_json: bool,
        regions: Collection[str] | None,
        deadline: Deadline,
        logged: Callable[[Conflict], bool] | None,
        gate: WrittenGate,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        chosen = [r for r in self.writers if regions is None or r in regions]
        changes, failures, skipped = self._decode(records, from_json)
        lookups = {
            c.key
            for c in changes
            if c.operation is Operation.DELETE or (c.old_image is None and not c.echo)
        }
        try:
            tombs = self.tombstones.read(table, lookups) if lookups else {}
        except ReplicatorError as exc:
            first = _lowest(c.sequence_number for c in changes)
            log.error("tombstone read failed", extra={"region": self.source, "reason": str(exc)})
            results = {r: TargetResult(r, failed_sequence=first, error=exc) for r in chosen}
            return BatchResult(results, tuple(failures), skipped=skipped, records=len(records))
        plan = plan_changes(
            changes,
            source=self.source,
            regions=chosen,
            policy=self.policy,
            fields=self.fields,
            tombstones=tombs,
        )
        scoped = project(plan, changes, rule=self.residency.rule(table), source=self.source)
        gate.expect(len(chosen))

        def writes(region: str, prefetched: Prefetched | None) -> Callable[[], TargetResult]:
            return functools.partial(
                self.writers[region].apply,
                table,
                scoped.writes[region],
                deadline=deadline,
                written=gate.arrival(),
                prefetched=prefetched,
            )

        def reads(region: str) -> Callable[[], Prefetched]:
            return functools.partial(
                self.writers[region].prefetch, table, scoped.writes[region], deadline=deadline
            )

        if ready is None:
            results = self._in_regions(chosen, lambda region: writes(region, None))
        else:
            results = self._read_then_write(chosen, reads, writes, ready)
        result = BatchResult(
            results,
            tuple(failures),
            echoes=plan.echoes,
            skipped=skipped,
            lost_locally=plan.lost_locally,
            records=len(records),
            violations=find_violations(
                changes, plan.lost_locally, source=self.source, fields=self.fields
            )
            + scoped.outside,
            refused=scoped.refused,
        )
        conflicts = [c for c in result.conflicts() if logged is None or not logged(c)]
        if conflicts and self.conflict_log is not None:
            self.conflict_log.record(table, self.source, conflicts)
        return result

    def _read_then_write(
        self,
        regions: Sequence[str],
        reads: Callable[[str], Callable[[], Prefetched]],
        writes: Callable[[str, Prefetched], Callable[[], TargetResult]],
        ready: Callable[[], None],
    ) -> dict[str, TargetResult]:
        """Every region's reads at once in the pool; then each region's writes as soon as
        its own reads are done (a region slow to read holds back no other region's
        writes), each after ``ready`` returned, in this thread (a page that waits holds
        no thread of the pool; a shard that stopped meanwhile starts no more of its
        writes). Every batch handed over has ended when this returns or raises: none
        runs on unseen."""
        handover = Handover()
        read: dict[Future[Prefetched], str] = {}
        futures: dict[str, Future[TargetResult]] = {}
        waiting = False
        try:
            for region in regions:
                read[self._pool.submit(handover.wrap(reads(region)))] = region
            for done in as_completed(read):
                waiting = True
                ready()  # raising (the shard stopped): no more writes are handed over
                waiting = False
                region = read[done]
                futures[region] = self._pool.submit(handover.wrap(writes(region, done.result())))
        except BaseException as exc:
            # A hand-over failed (the pool may have queued it), a region's reads raised, or
            # ``ready`` did: no batch starts any more, those started end first.
            if not waiting:  # a stop in ``ready`` is no error
                log.error(
                    "region batch not handed over: waiting for those started",
                    extra={"region": self.source, "reason": str(exc)},
                )
            handover.abandon()
            raise
        wait(futures.values())
        return {region: future.result() for region, future in futures.items()}

    def _in_regions(
        self, regions: Sequence[str], call: Callable[[str], Callable[[], T]]
    ) -> dict[str, T]:
        """``call(region)()`` for every region at once in the pool; every one has ended
        when this returns or raises: none runs on unseen."""
        handover = Handover()
        futures: dict[str, Future[T]] = {}
        try:
            for region in regions:
                futures[region] = self._pool.submit(handover.wrap(call(region)))
        except BaseException as exc:
            # The pool may have queued the batch it failed to hand over (and those before
            # it): none may write on once this raised, the shard's lease handed back.
            log.error(
                "region batch not handed over: waiting for those started",
                extra={"region": self.source, "reason": str(exc)},
            )
            handover.abandon()
            raise
        wait(futures.values())
        return {region: future.result() for region, future in futures.items()}
