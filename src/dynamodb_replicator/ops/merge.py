"""Merge out: what a joining table holds newer (or alone) reaches every other region.

add-region runs this before copying in, for a table that held items when the run started
(``ops/join.py``), so the scan reads the joining table's own data, not copies. Every item
goes to every other region as a put of its stored version, by the replicator's write
protocol: the same condition trees as its writes (a region holding the same or a newer
version refuses; "already newer"), and the target's remembered deletes are consulted, so a
merge never undoes a delete the target still remembers. The joining table's own remembered
deletes go out the same way. Items without a usable ``__timestamp`` are not copied: they
are counted and named (``version-items`` gives them one).

Residency: a put goes only to the regions in its item's scope; every other region gets a
delete of that version instead (``core.scoping``), so an out-of-scope item of the joining
table is never copied out to a region outside its scope.

What it cannot know: a delete elsewhere whose tombstone has expired (older than the
tombstone TTL) is forgotten, so the joining table's copy of that item comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import RateLimiter, parallel_scan
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.core.codec import key_to_json
from dynamodb_replicator.core.model import ItemKey, RegionSpec
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp, user_image
from dynamodb_replicator.core.policy import stored_version
from dynamodb_replicator.core.progress import ScanSegment
from dynamodb_replicator.core.scoping import evicted, withheld
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.core.tombstones import tombstone_from_item
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.ops.backfill import CONDITIONAL_ROUND, BackfillStats, write_units
from dynamodb_replicator.ops.resumable import ResumableScan, in_rounds
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["MERGE_TARGET", "MergeOut"]

# The merge's progress is kept in the joining region under this target name.
MERGE_TARGET = "merge-out"


class MergeOut:
    """Copies the joining region's items and remembered deletes out to ``writers``."""

    def __init__(
        self,
        config: RunnerConfig,
        joining: RegionSpec,
        writers: Mapping[str, StoreWriter],
        *,
        segments: int,
        limiter: RateLimiter,
        stats: BackfillStats,
        on_items: Callable[[int], None] = lambda n: None,
        own: StoreWriter | None = None,
    ) -> None:
        self.config, self.joining, self.writers = config, joining, writers
        self.segments, self.limiter, self.stats = segments, limiter, stats
        self.on_items = on_items
        self.own = own  # the joining region's writer: its items outside their scope leave
        self._evictions: list[DeleteVersion] = []
        self.fields = config.replication.fields
        self.names = config.replication.names
        self.client = make_client("dynamodb", joining, pool=segments + 4)
        self.state = DynamoStateStore(self.client, config.state_table, joining.name)
        self._regions = ThreadPoolExecutor(max_workers=max(1, segments * len(writers)))

    def scan(self, table: str, key_names: Sequence[str]) -> ResumableScan:
        """The resumable scan of the joining table, its progress kept in its region."""
        scans = [
            ScanSegment(table, self.joining.name, MERGE_TARGET, s, self.segments)
            for s in range(self.segments)
        ]
        physical = self.names.physical(table, self.joining.name)
        stop = self.limiter.stop
        return ResumableScan(
            self.client, self.joining.name, physical, key_names, self.state, scans, stop
        )

    def _send(self, table: str, ops: list[WriteOp]) -> bool:
        """Apply ``ops`` in every other region, each put kept to its item's residency scope
        (a region outside it gets a delete of that version: ``core.scoping``); False when
        stopped before writing."""
        self.limiter.take(write_units(ops, sized=False) * len(self.writers))
        if self.limiter.stop.is_set():
            return False
        per_region = {name: self._scoped(table, name, ops) for name in self.writers}

        def apply(name: str) -> tuple[int, Any]:
            scoped = per_region[name]
            puts = sum(isinstance(op, PutVersion) for op in scoped)
            return puts, self.writers[name].apply(table, scoped)

        # Every region at once: a slice takes the slowest region's time, not the sum.
        results = list(self._regions.map(apply, self.writers))
        sent_puts = sum(isinstance(op, PutVersion) for op in ops)
        for puts, result in results:
            if result.error is not None:
                raise result.error
            self.stats.add(
                copied_out=min(puts, result.applied),
                stale=result.stale,
                outside_out=sent_puts - puts,
            )
        return True

    def _evict(self, table: str, ops: list[WriteOp]) -> bool:
        """Note the joining table's items outside their scope, to remove once the merge
        sent everything out (``evict``)."""
        rule = self.config.replication.residency.rule(table)
        if rule is not None and self.own is not None:
            name = self.joining.name
            puts = [op for op in ops if isinstance(op, PutVersion)]
            deletes = [d for op in puts if (d := evicted(op, rule, name)) is not None]
            with self.stats.lock:
                self._evictions.extend(deletes)
        return True

    def evict(self, table: str) -> None:
        """Remove from the joining table its items outside their scope: after
        ``tombstones``, which would otherwise send these deletes out as well (a delete of
        every content of their version there, ``core.scoping``). A resumed merge does not
        redo this; ``diff --residency`` and ``repair`` find what is left."""
        if self.own is None or not self._evictions:
            return
        result = self.own.apply(table, list(self._evictions))
        if result.error is not None:
            raise result.error
        self._evictions.clear()

    def _scoped(self, table: str, region: str, ops: list[WriteOp]) -> list[WriteOp]:
        """``ops`` as ``region`` gets them under the table's residency rule."""
        rule = self.config.replication.residency.rule(table)
        if rule is None:
            return ops
        scoped: list[WriteOp] = []
        for op in ops:
            delete = withheld(op, region, rule, self.joining.name)
            scoped.append(op if delete is None else delete)
        return scoped

    def close(self) -> None:
        self._regions.shutdown(wait=True)

    def items(self, table: str, key_names: list[str]) -> None:
        """Merge the joining table's versioned items out (resumable), each slice in rounds
        of ``CONDITIONAL_ROUND`` keys: Ctrl-C stops between two rounds."""

        def write(chunk: list[dict[str, Any]]) -> bool:
            ops: list[WriteOp] = []
            for item in chunk:
                version = stored_version(item, self.joining.name, self.fields)
                if version is None:
                    self.stats.unversioned_item(key_to_json(item, key_names))
                    continue
                key = ItemKey.from_attributes({n: item[n] for n in key_names})
                image = user_image(item, self.fields)
                # strict: a region holding this very version has it already (no rewrite).
                ops.append(PutVersion(key, version, image, NO_SEQUENCE, strict=True))
            return not ops or (self._send(table, ops) and self._evict(table, ops))

        def handle(items: list[dict[str, Any]]) -> int:
            return in_rounds(items, CONDITIONAL_ROUND, write, self.limiter.stop)

        resumed = self.scan(table, key_names).run(handle, self.on_items)
        self.stats.resumed_segments += resumed

    def tombstones(self, table: str, key_names: list[str]) -> None:
        """Send the joining region's remembered deletes out (a rerun sends them again:
        a delete of a version a region no longer holds is refused, 2 units each)."""
        suffix = self.config.replication.tombstone_suffix
        name = self.names.tombstones(table, self.joining.name, suffix)
        if describe_table(self.client, name, self.joining.name) is None:
            return

        def on_page(segment: int, items: list[dict[str, Any]], _: Any) -> None:
            for start in range(0, len(items), CONDITIONAL_ROUND):
                ops: list[WriteOp] = []
                for item in items[start : start + CONDITIONAL_ROUND]:
                    tomb = tombstone_from_item(item, key_names, self.fields)
                    ops.append(DeleteVersion(tomb.key, tomb.version, tomb.deleted_in, NO_SEQUENCE))
                if not self._send(table, ops):
                    return
                with self.stats.lock:
                    self.stats.tombstones += len(ops)

        parallel_scan(
            self.client,
            name,
            region=self.joining.name,
            segments=self.segments,
            on_page=on_page,
            stop=self.limiter.stop,
        )
