"""Add a region to a live table: the steps of ``dynamodb-replicator add-region``.

1. create the table in the new region like the source's (keys, indexes, billing, TTL, a
   NEW_AND_OLD_IMAGES stream), plus its tombstone and state tables;
2. seed the new region's replication positions: in every region's state table, the new
   target starts where that region's changes had reached the source region. Changes before
   that are in the source table, which the copy scans afterwards; changes after it are
   replayed into the new region by the runner;
3. copy: into a table this run created or found empty (``ops/join.py``), nothing else
   writes while the new region is not in the config (replication into it is *held* at the
   seeded positions, and applications must not use it yet), so the copy uses fast,
   unconditional BatchWriteItem; each item carries its version's origin and marker like a
   replica write. Into any other table (one that held data, or a region configured already
   where runners may write) the copy uses the replicator's conditional writes (the apply
   rule), after the joining table's own items were merged out (``ops/merge.py``). The
   source's remembered deletes are copied first, conditionally;
4. add the region to the config file: running runners reload it and *release* replication
   into the new region from the seeded positions. The replay corrects every copy that was
   stale (an item changed or deleted in any region after the scan read it), because its
   writes are conditional. Per-segment resume points make the copy resumable after Ctrl-C
   or a crash.

Steps 2 and 4, and the check of the chosen source, are ops/new_region.py (re-exported here
for the modules and tests that import them from this one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.batch import write_batch
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import RateLimiter, parallel_scan
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.model import ItemKey, RegionSpec
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp, user_image
from dynamodb_replicator.core.policy import seal, stored_version
from dynamodb_replicator.core.progress import ScanSegment
from dynamodb_replicator.core.scoping import withheld
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.core.tombstones import tombstone_from_item
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.ids import PROCESS_NONCES
from dynamodb_replicator.ops.new_region import append_region, check_new_region, seed_positions
from dynamodb_replicator.ops.resumable import ResumableScan, in_rounds
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = [
    "CONDITIONAL_ROUND",
    "FAST_ROUND",
    "BackfillStats",
    "Backfiller",
    "append_region",
    "check_new_region",
    "seed_positions",
    "write_units",
]


# Keys per round of conditional writes (copy in, merge out): Ctrl-C waits for one round
# in flight per scan segment. Small enough for a quick stop, large enough that the scan
# segments together keep the writer's keys in flight (16 or more) busy.
CONDITIONAL_ROUND = 10
# Items per round of the fast copy: one BatchWriteItem.
FAST_ROUND = 25


@dataclass(slots=True)
class BackfillStats:
    """What a copy (and merge) of one table came to, counted from the segment threads."""

    copied_in: int = 0  # items written into the joining region
    copied_out: int = 0  # writes of the joining region's items into the other regions
    stale: int = 0  # writes the target refused: it held the same version or a newer one
    tombstones: int = 0  # remembered deletes copied (both ways)
    resumed_segments: int = 0
    unversioned: int = 0  # items of the joining table with no usable __timestamp
    unversioned_samples: list[str] = field(default_factory=list)
    outside: int = 0  # items the residency rule keeps out of the new region (a delete each)
    outside_out: int = 0  # merge-out puts sent as deletes to regions outside their scope
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        *,
        copied_in: int = 0,
        copied_out: int = 0,
        stale: int = 0,
        outside: int = 0,
        outside_out: int = 0,
    ) -> None:
        with self.lock:
            self.copied_in += copied_in
            self.copied_out += copied_out
            self.stale += stale
            self.outside += outside
            self.outside_out += outside_out

    def unversioned_item(self, key: str) -> None:
        with self.lock:
            self.unversioned += 1
            if len(self.unversioned_samples) < 5:
                self.unversioned_samples.append(key)


def write_units(ops: Sequence[WriteOp], *, sized: bool) -> float:
    """Write units of ``ops`` in one region: a put 1 per KB (``sized``; else 1), a delete 2
    (its tombstone and the delete)."""
    units = 0.0
    for op in ops:
        if isinstance(op, PutVersion):
            units += max(1.0, len(json.dumps(op.image, default=str)) / 1024) if sized else 1.0
        else:
            units += 2.0
    return units


class Backfiller:
    """Copies one table from ``source`` into the new region, resumably, a round at a time."""

    def __init__(
        self,
        config: RunnerConfig,
        source: RegionSpec,
        new: RegionSpec,
        *,
        writer: StoreWriter,
        segments: int,
        limiter: RateLimiter,
        stop: threading.Event,
        on_items: Callable[[int], None] = lambda n: None,
        stats: BackfillStats | None = None,
    ) -> None:
        self.config, self.source, self.new = config, source, new
        self.writer, self.segments, self.stop = writer, segments, stop
        self.limiter = limiter
        self.on_items = on_items
        self.stats = stats or BackfillStats()
        self.fields = config.replication.fields
        self.names = config.replication.names
        self.source_client = make_client("dynamodb", source, pool=segments + 4)
        self._client = make_client("dynamodb", new, pool=segments + 4)
        self.state = DynamoStateStore(make_client("dynamodb", new), config.state_table, new.name)

    def close(self) -> None:
        """Nothing left to release: every round is written before its handler returns."""

    def prepare(self, table: str) -> None:
        client = make_client("dynamodb", self.new)
        ensure_tombstone_table(
            client,
            self.names.physical(table, self.new.name),
            region=self.new.name,
            suffix=self.config.replication.tombstone_suffix,
            fields=self.fields,
        )
        ensure_state_table(client, self.config.state_table, self.new.name)

    def scan(self, table: str, key_names: Sequence[str]) -> ResumableScan:
        """The resumable scan of the source table, its progress kept in the new region."""
        scans = [
            ScanSegment(table, self.source.name, self.new.name, s, self.segments)
            for s in range(self.segments)
        ]
        physical = self.names.physical(table, self.source.name)
        return ResumableScan(
            self.source_client, self.source.name, physical, key_names, self.state, scans, self.stop
        )

    def copy_tombstones(self, table: str, key_names: list[str]) -> None:
        """Copy the source's remembered deletes (conditional: never over a newer version)."""
        suffix = self.config.replication.tombstone_suffix
        name = self.names.tombstones(table, self.source.name, suffix)

        def on_page(segment: int, items: list[dict[str, Any]], _: Any) -> None:
            for start in range(0, len(items), CONDITIONAL_ROUND):
                ops: list[WriteOp] = []
                for item in items[start : start + CONDITIONAL_ROUND]:
                    tomb = tombstone_from_item(item, key_names, self.fields)
                    ops.append(DeleteVersion(tomb.key, tomb.version, tomb.deleted_in, NO_SEQUENCE))
                self.limiter.take(write_units(ops, sized=False))
                if self.stop.is_set():
                    return
                self._apply(table, ops)
                with self.stats.lock:
                    self.stats.tombstones += len(ops)

        parallel_scan(
            self.source_client,
            name,
            region=self.source.name,
            segments=self.segments,
            on_page=on_page,
            stop=self.stop,
        )

    def _apply(self, table: str, ops: list[WriteOp]) -> int:
        result = self.writer.apply(table, ops)
        if result.error is not None:
            raise result.error
        return result.stale

    def _batch_write(self, table: str, ops: list[PutVersion]) -> None:
        """Unconditional BatchWriteItem of replica-form items (only into a table this run
        created or found empty, while replication into it is held: ``ops/join.py``)."""
        items = []
        for op in ops:
            item = dict(op.image)
            item[self.fields.origin] = {"S": op.version.origin}
            item[self.fields.marker] = {"N": op.version.raw_timestamp}
            item[self.fields.nonce] = {"S": seal(PROCESS_NONCES.nonce(), op.image, self.fields)}
            if op.version.seq:
                item[self.fields.origin_seq] = {"S": op.version.seq}
            items.append(item)
        physical = self.names.physical(table, self.new.name)
        for start in range(0, len(items), 25):
            write_batch(self._client, physical, items[start : start + 25], region=self.new.name)

    def _versions(self, items: list[dict[str, Any]], key_names: list[str]) -> list[WriteOp]:
        """A strict put of each versioned item's version (the source's own unversioned
        items, never replicated, are left out): where the same version is there (merged out
        before), no rewrite."""
        ops: list[WriteOp] = []
        for item in items:
            version = stored_version(item, self.source.name, self.fields)
            if version is not None:
                key = ItemKey.from_attributes({n: item[n] for n in key_names})
                image = user_image(item, self.fields)
                ops.append(PutVersion(key, version, image, NO_SEQUENCE, strict=True))
        return ops

    def copy_items(self, table: str, key_names: list[str], *, fast: bool) -> None:
        """Copy every versioned item of the source; ``fast``: unconditional batch writes (see
        the module docstring and ``ops/join.py``), else the apply rule. Each slice goes out
        in rounds (one BatchWriteItem, or ``CONDITIONAL_ROUND`` keys), one round in flight per
        scan segment, so Ctrl-C stops between two writes."""

        def write(chunk: list[dict[str, Any]]) -> bool:
            ops, outside = self._scoped(table, self._versions(chunk, key_names))
            # Sizing every item costs CPU: only when limited.
            self.limiter.take(write_units([*ops, *outside], sized=bool(self.limiter.per_second)))
            if self.stop.is_set():
                return False
            stale = 0
            if ops and fast:
                self._batch_write(table, [op for op in ops if isinstance(op, PutVersion)])
            elif ops:
                stale = self._apply(table, ops)
            if outside:  # before the round counts as done: a resumed copy repeats them
                self._apply(table, list(outside))
            self.stats.add(copied_in=len(ops) - stale, stale=stale, outside=len(outside))
            return True

        def handle(items: list[dict[str, Any]]) -> int:
            return in_rounds(items, FAST_ROUND if fast else CONDITIONAL_ROUND, write, self.stop)

        resumed = self.scan(table, key_names).run(handle, self.on_items)
        self.stats.resumed_segments += resumed

    def _scoped(self, table: str, ops: list[WriteOp]) -> tuple[list[WriteOp], list[DeleteVersion]]:
        """The items the residency rule lets into the new region, and a delete of the
        version of each other one there (its tombstone keeps older versions in flight
        from landing: ``core.scoping``)."""
        rule = self.config.replication.residency.rule(table)
        if rule is None:
            return ops, []
        kept: list[WriteOp] = []
        outside: list[DeleteVersion] = []
        for op in ops:
            delete = withheld(op, self.new.name, rule, self.source.name)
            if delete is None:
                kept.append(op)
            else:
                outside.append(delete)
        return kept, outside
