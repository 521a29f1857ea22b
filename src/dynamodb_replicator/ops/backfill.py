"""Add a region to a live table: the steps of ``dynamodb-replicator add-region``.

1. create the table in the new region like the source's (keys, indexes, billing, TTL, a
   NEW_AND_OLD_IMAGES stream), plus its tombstone and state tables;
2. seed the new region's replication positions: in every region's state table, the new
   target starts where that region's changes had reached the source region. Changes before
   that are in the source table, which the copy scans afterwards; changes after it are
   replayed into the new region by the runner;
3. copy the source's items, then its remembered deletes. While the new region is not in
   the config yet, nothing else writes to it (replication into it is *held* at the seeded
   positions, and applications must not use it yet), so the copy uses fast, unconditional
   BatchWriteItem; each item carries its version's origin and marker like a replica write.
   If the region is already configured (a run resumed after step 4), runners may be writing
   to it, so the copy falls back to the replicator's conditional writes (the apply rule);
4. add the region to the config file: running runners reload it and *release* replication
   into the new region from the seeded positions. The replay corrects every copy that was
   stale (an item changed or deleted in any region after the scan read it), because its
   writes are conditional. Per-segment resume points make the copy resumable after Ctrl-C
   or a crash.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.batch import write_batch
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import RateLimiter, parallel_scan
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import ItemKey, RegionSpec
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp, user_image
from dynamodb_replicator.core.policy import stored_version
from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress
from dynamodb_replicator.core.scoping import withheld
from dynamodb_replicator.core.streams import NO_SEQUENCE, ShardRef
from dynamodb_replicator.core.tombstones import tombstone_from_item
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.files import replace_file
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = [
    "BackfillStats",
    "Backfiller",
    "append_region",
    "check_new_region",
    "seed_positions",
]


def append_region(path: Path, spec: RegionSpec) -> bool:
    """Add ``spec`` to the config file (text appended, comments kept); False if present."""
    text = path.read_text()
    if f'name = "{spec.name}"' in text:
        return False
    block = f'\n[[regions]]\nname = "{spec.name}"\n'
    if spec.endpoint_url:
        block += f'endpoint_url = "{spec.endpoint_url}"\n'
    if spec.role is not None:
        # JSON strings are TOML basic strings for these characters (no control characters).
        block += f"role_arn = {json.dumps(spec.role.role_arn)}\n"
        block += f"session_name = {json.dumps(spec.role.session_name)}\n"
        if spec.role.external_id is not None:
            block += f"external_id = {json.dumps(spec.role.external_id)}\n"
    replace_file(path, text.rstrip("\n") + "\n" + block)
    return True


def seed_positions(config: RunnerConfig, source: str, new: str, log: Callable[[str], None]) -> int:
    """Start the new target, in every region's state table, at the source's position.

    Returns how many shard positions were seeded. Existing positions of the new target are
    kept (a resumed run). A shard the source has no position for starts at TRIM_HORIZON.
    """
    seeded = 0
    for spec in config.regions:
        client = make_client("dynamodb", spec)
        ensure_state_table(client, config.state_table, spec.name)
        state = DynamoStateStore(client, config.state_table, spec.name)
        streams = StreamClient(
            spec.name, client, make_client("dynamodbstreams", spec), config.replication.names
        )
        for table in config.tables:
            for arn in streams.stream_arns(table):
                for shard in streams.shards(arn):
                    ref = ShardRef(table, arn, shard.shard_id)
                    positions = state.load(ref)
                    if new in positions or source not in positions:
                        continue
                    state.seed(ref, {new: positions[source]})
                    seeded += 1
        log(f"{spec.name}: replication into {new} will start where {source} stands")
    return seeded


@dataclass(slots=True)
class BackfillStats:
    copied: int = 0
    stale: int = 0
    tombstones: int = 0
    resumed_segments: int = 0
    unversioned: int = 0
    unversioned_samples: list[str] = field(default_factory=list)
    outside: int = 0  # items the residency rule keeps out of the new region (a delete each)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Backfiller:
    """Copies one table from ``source`` into the new region, resumably."""

    def __init__(
        self,
        config: RunnerConfig,
        source: RegionSpec,
        new: RegionSpec,
        *,
        writer: StoreWriter,
        segments: int,
        max_wcu: float | None,
        stop: threading.Event,
        on_items: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.config, self.source, self.new = config, source, new
        self.writer, self.segments, self.stop = writer, segments, stop
        self.limiter = RateLimiter(max_wcu)
        self.on_items = on_items
        self.stats = BackfillStats()
        self.fields = config.replication.fields
        self.names = config.replication.names
        self.source_client = make_client("dynamodb", source, pool=segments + 4)
        self._client = make_client("dynamodb", new, pool=2 * segments + 4)
        self.state = DynamoStateStore(make_client("dynamodb", new), config.state_table, new.name)
        # Batch writes of one page go out concurrently: two requests in flight per segment.
        self._batches = ThreadPoolExecutor(max_workers=2 * segments)

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

    def _apply(self, table: str, ops: list[WriteOp], units: float) -> int:
        self.limiter.take(units)
        result = self.writer.apply(table, ops)
        if result.error is not None:
            raise result.error
        return result.stale

    def copy_tombstones(self, table: str, key_names: list[str]) -> None:
        suffix = self.config.replication.tombstone_suffix
        name = self.names.tombstones(table, self.source.name, suffix)

        def on_page(segment: int, items: list[dict[str, Any]], _: Any) -> None:
            ops: list[WriteOp] = []
            for item in items:
                tomb = tombstone_from_item(item, key_names, self.fields)
                ops.append(DeleteVersion(tomb.key, tomb.version, tomb.deleted_in, NO_SEQUENCE))
            self._apply(table, ops, units=2 * len(ops))
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

    def _segment(self, table: str, segment: int) -> ScanSegment:
        return ScanSegment(table, self.source.name, self.new.name, segment, self.segments)

    def _batch_write(self, table: str, ops: list[PutVersion]) -> None:
        """Unconditional BatchWriteItem of replica-form items (only while replication into
        the new region is held and nothing else writes to it)."""
        items = []
        for op in ops:
            item = dict(op.image)
            item[self.fields.origin] = {"S": op.version.origin}
            item[self.fields.marker] = {"N": op.version.raw_timestamp}
            items.append(item)
        chunks = [items[start : start + 25] for start in range(0, len(items), 25)]
        physical = self.names.physical(table, self.new.name)
        list(
            self._batches.map(
                lambda chunk: write_batch(self._client, physical, chunk, region=self.new.name),
                chunks,
            )
        )

    def copy_items(self, table: str, key_names: list[str], *, held: bool) -> None:
        """Copy every versioned item; ``held``: replication into the new region is held, so
        fast unconditional batch writes are safe (see the module docstring)."""
        resume: dict[int, dict[str, Any] | None] = {}
        done: set[int] = set()
        for segment in range(self.segments):
            progress = self.state.load_progress(self._segment(table, segment))
            if progress.done:
                done.add(segment)
            elif progress.last_key is not None:
                resume[segment] = dict(progress.last_key)
            if progress.started:
                self.stats.resumed_segments += 1

        def on_page(segment: int, items: list[dict[str, Any]], next_key: Any) -> None:
            ops: list[WriteOp] = []
            for item in items:
                version = stored_version(item, self.source.name, self.fields)
                key = ItemKey.from_attributes({n: item[n] for n in key_names})
                if version is None:
                    with self.stats.lock:
                        self.stats.unversioned += 1
                        if len(self.stats.unversioned_samples) < 5:
                            self.stats.unversioned_samples.append(str(key))
                    continue
                ops.append(PutVersion(key, version, user_image(item, self.fields), NO_SEQUENCE))
            ops, outside = self._scoped(table, ops)
            units = float(len(ops))
            if self.limiter.per_second:  # sizing every item costs CPU: only when limited
                size = sum(
                    len(json.dumps(op.image, default=str))
                    for op in ops
                    if isinstance(op, PutVersion)
                )
                units = max(units, size / 1024)
            stale = 0
            if ops and held:
                self.limiter.take(units)
                self._batch_write(table, [op for op in ops if isinstance(op, PutVersion)])
            elif ops:  # conditional transactions cost twice the WCU
                stale = self._apply(table, ops, units=2 * units)
            if outside:  # before the page counts as done: a resumed copy repeats them
                self._apply(table, list(outside), units=2 * len(outside))
            self.state.save_progress(
                self._segment(table, segment), SegmentProgress.after_page(next_key)
            )
            with self.stats.lock:
                self.stats.copied += len(ops) - stale
                self.stats.stale += stale
                self.stats.outside += len(outside)
            self.on_items(len(items))

        try:
            parallel_scan(
                self.source_client,
                self.names.physical(table, self.source.name),
                region=self.source.name,
                segments=self.segments,
                on_page=on_page,
                resume=resume,
                skip=frozenset(done),
                stop=self.stop,
            )
        finally:
            self._batches.shutdown(wait=True)
        if self.stop.is_set():
            raise KeyboardInterrupt

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


def check_new_region(
    config: RunnerConfig, name: str, source: str | None
) -> tuple[RegionSpec, bool]:
    """The source region spec, and whether ``name`` is already configured (a resumed run)."""
    known = {spec.name for spec in config.regions}
    chosen = source or config.regions[0].name
    if chosen not in known:
        raise ConfigError(f"--from {chosen}: not a configured region ({sorted(known)})")
    if chosen == name:
        raise ConfigError("--from must be another region than the one being added")
    return config.region(chosen), name in known
