"""``dynamodb-replicator add-region``: add a region to live tables, then prove it matches."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
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
from dynamodb_replicator.aws.schema import create_like, describe_shape
from dynamodb_replicator.cli.compare import Selection
from dynamodb_replicator.cli.diff import (
    add_settle_options,
    print_report,
    settle_timeout,
    settled_diff,
)
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.ops.backfill import (
    Backfiller,
    append_region,
    check_new_region,
    seed_positions,
)
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("add-region", help="add a region to the live tables")
    parser.add_argument("--config", required=True, help="TOML configuration file (updated)")
    parser.add_argument("--region", required=True, help="the region to add")
    parser.add_argument("--endpoint-url", help="endpoint of the new region (DynamoDB Local, ...)")
    parser.add_argument("--from", dest="source", help="region to copy from (default: the first)")
    parser.add_argument("--segments", type=int, default=4, help="parallel scan segments")
    parser.add_argument("--max-wcu", type=float, help="limit the copy to this many WCU per second")
    add_settle_options(parser)
    parser.set_defaults(run=run)


def _speed(progress: Progress, task: Any) -> str:
    speed = progress.tasks[task].speed
    return f"{speed:,.0f} items/s" if speed else ""


def _copy(
    console: Console,
    *,
    config: RunnerConfig,
    source: RegionSpec,
    new: RegionSpec,
    args: argparse.Namespace,
    stop: threading.Event,
    held: bool,
) -> None:
    settings = config.replication
    writer = build_writer(new, settings, max_in_flight=max(16, args.segments * 4))
    source_client = make_client("dynamodb", source)
    try:
        for table in config.tables:
            shape = describe_shape(source_client, table, source.name)
            assert shape is not None  # checked before
            keys = [name for name, _ in shape.key_schema]
            total = source_client.describe_table(TableName=table)["Table"].get("ItemCount") or None
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"copy {table}", total=total, speed="")

                def advance(count: int, task: Any = task) -> None:
                    progress.advance(task, count)
                    progress.update(task, speed=_speed(progress, task))

                backfiller = Backfiller(
                    config,
                    source,
                    new,
                    writer=writer,
                    segments=args.segments,
                    max_wcu=args.max_wcu,
                    stop=stop,
                    on_items=advance,
                )
                backfiller.prepare(table)
                began = time.monotonic()
                backfiller.copy_items(table, keys, held=held)
                backfiller.copy_tombstones(table, keys)
                seconds = time.monotonic() - began
            stats = backfiller.stats
            console.print(
                f"{table}: copied {stats.copied} items ({stats.stale} already newer in "
                f"{new.name}), {stats.tombstones} remembered deletes, "
                f"{stats.resumed_segments} segments resumed; copy took {seconds:.1f} s "
                f"({stats.copied / max(seconds, 1e-9):,.0f} items/s)"
            )
            if stats.unversioned:
                console.print(
                    f"[yellow]{stats.unversioned} items have no usable __timestamp and "
                    f"were not copied[/yellow] (e.g. {stats.unversioned_samples})"
                )
    finally:
        writer.close()


def _verify(
    console: Console,
    path: Path,
    pair: tuple[RegionSpec, RegionSpec],
    segments: int,
    timeout: float | None,
) -> bool:
    """Diff the new region against the source; keys that differ are settled against the
    runner's checkpoints (``ops/settle.py``): True when none diverged."""
    config = load_config(path)  # with the new region: its stream is a source now too
    ok = True
    for table in config.tables:
        shape = describe_shape(make_client("dynamodb", pair[0]), table, pair[0].name)
        assert shape is not None
        keys = [name for name, _ in shape.key_schema]
        selection = Selection(config, pair, {table: keys})
        report = settled_diff(selection, table, keys, segments=segments, timeout=timeout)
        if not report.clean:
            ok = False
            print_report(console, report)
            console.print(
                f"[red]{pair[1].name} does not match {pair[0].name}[/red]: is a runner running "
                "with the updated config? `repair` fixes diverged keys."
            )
            continue
        if report.settle is not None:
            settle = report.settle
            console.print(
                f"{table}: {settle.in_flight} keys differed while changes were in flight and "
                f"agreed once replication caught up ({settle.method}, {settle.seconds:.1f} s)"
            )
        console.print(f"{table}: {pair[1].name} matches {pair[0].name}")
    return ok


def run(args: argparse.Namespace) -> int:
    console = Console()
    path = Path(args.config)
    config = load_config(path)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    timeout = settle_timeout(args)
    source, resumed = check_new_region(config, args.region, args.source)
    endpoint = args.endpoint_url or (config.region(args.region).endpoint_url if resumed else None)
    new = RegionSpec(args.region, endpoint)
    new_client = make_client("dynamodb", new)
    for table in config.tables:
        shape = describe_shape(make_client("dynamodb", source), table, source.name)
        if shape is None:
            raise ConfigError(f"table {table} does not exist in the source region {source.name}")
        created = create_like(new_client, shape, new.name)
        console.print(f"{table}: {'created' if created else 'found (same schema)'} in {new.name}")
    seeded = seed_positions(config, source.name, new.name, console.print)
    console.print(f"seeded {seeded} shard positions for {new.name}")
    held = not resumed  # not in the config yet: nothing replicates into it during the copy
    console.print(
        "copying with batch writes while replication into the new region is held"
        if held
        else f"{new.name} is configured already: copying with conditional writes"
    )
    stop = threading.Event()
    # Ctrl-C stops the scan threads between pages; their resume points are saved by then.
    previous = signal.signal(signal.SIGINT, lambda number, frame: stop.set())
    try:
        _copy(console, config=config, source=source, new=new, args=args, stop=stop, held=held)
    except KeyboardInterrupt:
        stop.set()
        console.print("[yellow]interrupted: run the same command again to resume[/yellow]")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    if append_region(path, new):
        console.print(
            f"added {new.name} to {path}: running runners pick it up within seconds and "
            "replay every change since the seeded positions into it"
        )
    pair = (source, new)
    return 0 if _verify(console, path, pair, args.segments, timeout) else 1
