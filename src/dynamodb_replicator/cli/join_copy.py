"""add-region's copy: decide each table's mode, merge the joining table out, copy in.

The modes and their reasons are in ``ops/join.py``; the merge in ``ops/merge.py``; the copy
in ``ops/backfill.py``. Ctrl-C (``cli/interrupt.py``) stops every scan between two slices
with its resume point saved.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.aws.scan import RateLimiter
from dynamodb_replicator.aws.schema import describe_shape
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.cli.interrupt import Interruption
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.progress import ScanSegment
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.ops.backfill import Backfiller, BackfillStats
from dynamodb_replicator.ops.join import CopyMode, decide_mode, holds_items
from dynamodb_replicator.ops.merge import MERGE_TARGET, MergeOut
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["copy", "resume_command"]


def _speed(progress: Progress, task: Any) -> str:
    speed = progress.tasks[task].speed
    return f"{speed:,.0f} items/s" if speed else ""


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
        console=console,
        # Through a pipe a bar is one more line cut to the console's width: the summary
        # lines say the same.
        disable=not console.is_terminal,
    )


def _counter(progress: Progress, what: str, total: int | None) -> Callable[[int], None]:
    task = progress.add_task(what, total=total, speed="")

    def advance(count: int) -> None:
        progress.advance(task, count)
        progress.update(task, speed=_speed(progress, task))

    return advance


@dataclass(frozen=True, slots=True)
class _Job:
    """One add-region run's copy: who writes where, how fast, and when to stop."""

    config: RunnerConfig
    source: RegionSpec
    new: RegionSpec
    segments: int
    limiter: RateLimiter
    writers: dict[str, StoreWriter]  # every region, the new one included

    def keys(self, table: str) -> tuple[list[str], int | None]:
        """The table's key attribute names, and the source's (approximate) item count."""
        client = make_client("dynamodb", self.source)
        physical = self.config.replication.names.physical(table, self.source.name)
        shape = describe_shape(client, physical, self.source.name)
        assert shape is not None  # checked before
        total = client.describe_table(TableName=physical)["Table"].get("ItemCount") or None
        return [name for name, _ in shape.key_schema], total


def _merge_out(console: Console, job: _Job, table: str, stats: BackfillStats) -> None:
    keys, _ = job.keys(table)
    others = {name: w for name, w in job.writers.items() if name != job.new.name}
    with _bar(console) as progress:
        merge = MergeOut(
            job.config,
            job.new,
            others,
            segments=job.segments,
            limiter=job.limiter,
            stats=stats,
            on_items=_counter(progress, f"merge {table} out of {job.new.name}", None),
            own=job.writers[job.new.name],
        )
        try:
            merge.items(table, keys)
            merge.tombstones(table, keys)
            merge.evict(table)
        finally:
            merge.close()


def _copy_in(console: Console, job: _Job, table: str, stats: BackfillStats, fast: bool) -> None:
    keys, total = job.keys(table)
    with _bar(console) as progress:
        backfiller = Backfiller(
            job.config,
            job.source,
            job.new,
            writer=job.writers[job.new.name],
            segments=job.segments,
            limiter=job.limiter,
            stop=job.limiter.stop,
            on_items=_counter(progress, f"copy {table}", total),
            stats=stats,
        )
        try:
            backfiller.prepare(table)
            backfiller.copy_tombstones(table, keys)
            backfiller.copy_items(table, keys, fast=fast)
        finally:
            backfiller.close()


def _summary(console: Console, table: str, job: _Job, stats: BackfillStats, took: float) -> None:
    new = job.new.name
    rate = (stats.copied_in + stats.copied_out + stats.stale) / max(took, 1e-9)
    console.print(
        f"{table}: copied in {stats.copied_in}, copied out {stats.copied_out}, already newer "
        f"{stats.stale}, unversioned {stats.unversioned}; {stats.tombstones} remembered "
        f"deletes, {stats.resumed_segments} segments resumed; copy took {took:.1f} s "
        f"({rate:,.0f} items/s)"
    )
    if stats.outside:
        console.print(
            f"{table}: {stats.outside} items outside the new region's residency scope were "
            "not copied (their versions are remembered as deleted there)"
        )
    if stats.outside_out:
        console.print(
            f"{table}: {stats.outside_out} of {new}'s items were not copied out to regions "
            "outside their residency scope (remembered as deleted there)"
        )
    if stats.unversioned:
        console.print(
            f"[yellow]{stats.unversioned} items in {new} have no usable __timestamp and were "
            f"not copied out[/yellow] (e.g. {'; '.join(stats.unversioned_samples)}): give "
            "them one with `dynamodb-replicator version-items --config FILE --region "
            f"{new} --timestamp MS` (the same MS as the other regions' items got), then "
            "run this command again with --resume"
        )


def _copy_table(console: Console, job: _Job, table: str, mode: CopyMode) -> dict[str, int]:
    console.print(f"{table}: {mode.why}")
    stats = BackfillStats()
    began = time.monotonic()
    if mode.merge:  # before the copy in: the scan then reads the table's own items
        _merge_out(console, job, table, stats)
    if not job.limiter.stop.is_set():
        _copy_in(console, job, table, stats, mode.fast)
    _summary(console, table, job, stats, time.monotonic() - began)
    return {
        "copied_in": stats.copied_in,
        "copied_out": stats.copied_out,
        "already_newer": stats.stale,
        "unversioned": stats.unversioned,
        "remembered_deletes": stats.tombstones,
    }


def _modes(job: _Job, created: dict[str, bool], configured: bool) -> dict[str, CopyMode]:
    """Each table's copy mode (``ops/join.py``), decided before anything is written."""
    names, new = job.config.replication.names, job.new
    client = make_client("dynamodb", new)
    ensure_state_table(client, job.config.state_table, new.name)
    state = DynamoStateStore(client, job.config.state_table, new.name)
    suffix = job.config.replication.tombstone_suffix
    modes = {}
    for table in job.config.tables:
        physical = names.physical(table, new.name)
        tombs = names.tombstones(table, new.name, suffix)

        def empty(physical: str = physical, tombs: str = tombs) -> bool:
            return not any(holds_items(client, name, new.name) for name in (physical, tombs))

        def restart(table: str = table) -> None:
            for segment in range(job.segments):
                for source, target in ((job.source.name, new.name), (new.name, MERGE_TARGET)):
                    scan = ScanSegment(table, source, target, segment, job.segments)
                    state.clear_progress(scan)

        modes[table] = decide_mode(
            state,
            table,
            created=created[table],
            configured=configured,
            empty=empty,
            restart=restart,
        )
    return modes


def resume_command(args: argparse.Namespace, configured: bool) -> str:
    words = ["dynamodb-replicator", "add-region", "--config", args.config, "--region", args.region]
    for option, value in (("--endpoint-url", args.endpoint_url), ("--from", args.source)):
        if value:
            words += [option, value]
    if args.max_wcu:
        words += ["--max-wcu", f"{args.max_wcu:g}"]
    return shlex.join([*words, "--segments", str(args.segments)] + ["--resume"] * configured)


def _writers(
    config: RunnerConfig, new: RegionSpec, depth: int, stop: Any
) -> dict[str, StoreWriter]:
    """A writer into every configured region and the new one; ``stop`` cuts retries short."""
    settings = config.replication
    specs = {spec.name: spec for spec in config.regions}
    specs[new.name] = new
    return {
        name: build_writer(spec, settings, max_in_flight=depth, stop=stop)
        for name, spec in specs.items()
    }


def copy(
    console: Console,
    config: RunnerConfig,
    pair: tuple[RegionSpec, RegionSpec],
    args: argparse.Namespace,
    created: dict[str, bool],
) -> tuple[int, dict[str, dict[str, int]]]:
    """Decide the modes, merge out and copy in every table: (0 or 130 when interrupted,
    counts per table)."""
    configured = bool(args.resume)
    counts: dict[str, dict[str, int]] = {}
    with Interruption(resume=resume_command(args, configured), stream=console.file) as stop:
        depth = max(16, args.segments * 4)
        writers = _writers(config, pair[1], depth, stop.stop)
        limiter = RateLimiter(args.max_wcu, stop=stop.stop)
        job = _Job(config, pair[0], pair[1], args.segments, limiter, writers)
        try:
            for table, mode in _modes(job, created, configured).items():
                counts[table] = _copy_table(console, job, table, mode)
                if stop.stop.is_set():
                    return stop.report(), counts
        finally:
            for writer in writers.values():
                writer.close()
    return 0, counts
