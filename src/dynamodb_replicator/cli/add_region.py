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
from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.roles import RoleSpec, parse_role
from dynamodb_replicator.ops.backfill import (
    Backfiller,
    append_region,
    check_new_region,
    seed_positions,
)
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``add-region`` command."""
    parser = add_command(
        commands,
        "add-region",
        help="add a region to the live tables: create, copy, seed positions, verify",
        examples=[
            "--config replicator.toml --region sa-east-1",
            "--config replicator.toml --region sa-east-1 --from eu-west-1 --max-wcu 2000",
            "--config local.toml --region ca-central-1 --endpoint-url http://127.0.0.1:8000",
            "--config replicator.toml --region sa-east-1 --resume",
        ],
        run=run,
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="TOML configuration file (updated)"
    )
    parser.add_argument("--region", required=True, metavar="REGION", help="the region to add")
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="endpoint of the new region (DynamoDB Local, ...)"
    )
    parser.add_argument(
        "--role-arn",
        metavar="ARN",
        help="the new region is in another account: the role to assume there (written to "
        "the config with the region)",
    )
    parser.add_argument(
        "--external-id", metavar="ID", help="with --role-arn: the external ID its trust needs"
    )
    parser.add_argument(
        "--session-name", metavar="NAME", help="with --role-arn: the role session's name"
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="REGION",
        help="region to copy from (default: the first configured)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="the region is configured already (an earlier add-region ended before its "
        "verification passed): copy again with conditional writes and verify",
    )
    parser.add_argument(
        "--segments",
        type=int,
        default=4,
        metavar="N",
        help="parallel scan segments (default: 4)",
    )
    parser.add_argument(
        "--max-wcu",
        type=float,
        metavar="WCU",
        help="limit the copy to this many write units per second (default: no limit)",
    )
    add_settle_options(parser)
    add_output(parser)


def _check_request(config: RunnerConfig, args: argparse.Namespace, resumed: bool) -> None:
    """Refuse what would surprise: copying into a configured region again without
    ``--resume``, or reaching AWS for a region of an all-local setup."""
    if resumed and not args.resume:
        raise ConfigError(
            f"{args.region} is configured already (replication into it runs): add-region "
            "would copy every item again. Pass --resume to finish an earlier add-region of "
            "it, or use `diff` and `repair` to compare and fix it"
        )
    if args.resume and not resumed:
        raise ConfigError(f"--resume: {args.region} is not in {args.config} yet")
    local = all(spec.endpoint_url for spec in config.regions)
    if not resumed and not args.endpoint_url and local:
        raise ConfigError(
            f"no --endpoint-url for {args.region}, but every configured region has an "
            "endpoint_url (a local setup): it would be reached on AWS. Pass --endpoint-url, "
            f"e.g. --endpoint-url {config.regions[0].endpoint_url}"
        )


def _role(config: RunnerConfig, args: argparse.Namespace, resumed: bool) -> RoleSpec | None:
    """The new region's role: from the options, else (``--resume``) from the config."""
    given = {
        "role_arn": args.role_arn,
        "external_id": args.external_id,
        "session_name": args.session_name,
    }
    role = parse_role({k: v for k, v in given.items() if v is not None}, "add-region")
    return role if role is not None or not resumed else config.region(args.region).role


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
            physical = settings.names.physical(table, source.name)
            shape = describe_shape(source_client, physical, source.name)
            assert shape is not None  # checked before
            keys = [name for name, _ in shape.key_schema]
            described = source_client.describe_table(TableName=physical)["Table"]
            total = described.get("ItemCount") or None
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
            if stats.outside:
                console.print(
                    f"{table}: {stats.outside} items outside the new region's residency "
                    "scope were not copied (their versions are remembered as deleted there)"
                )
            if stats.unversioned:
                console.print(
                    f"[yellow]{stats.unversioned} items have no usable __timestamp and "
                    f"were not copied[/yellow] (e.g. {'; '.join(stats.unversioned_samples)})"
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
        physical = config.replication.names.physical(table, pair[0].name)
        shape = describe_shape(make_client("dynamodb", pair[0]), physical, pair[0].name)
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
    """Create the tables, copy, seed positions, add the region to the config, verify."""
    # With --output json the story goes to stderr and stdout holds only the JSON result.
    console = Console(stderr=args.output == "json")
    path = Path(args.config)
    config = load_config(path)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    timeout = settle_timeout(args)
    source, resumed = check_new_region(config, args.region, args.source)
    _check_request(config, args, resumed)
    endpoint = args.endpoint_url or (config.region(args.region).endpoint_url if resumed else None)
    new = RegionSpec(args.region, endpoint, role=_role(config, args, resumed))
    new_client = make_client("dynamodb", new)
    names = config.replication.names
    for table in config.tables:
        physical = names.physical(table, source.name)
        shape = describe_shape(make_client("dynamodb", source), physical, source.name)
        if shape is None:
            raise ConfigError(f"table {physical} does not exist in the source region {source.name}")
        here = shape.named(names.physical(table, new.name))
        created = create_like(new_client, here, new.name)
        state = "created" if created else "found (same schema)"
        named = "" if here.name == table else f" (as {here.name})"
        console.print(f"{table}{named}: {state} in {new.name}")
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
    added = append_region(path, new)
    if added:
        console.print(
            f"added {new.name} to {path}: running runners pick it up within seconds and "
            "replay every change since the seeded positions into it"
        )
    pair = (source, new)
    verified = _verify(console, path, pair, args.segments, timeout)
    if args.output == "json":
        print_json(
            {
                "region": new.name,
                "source": source.name,
                "tables": list(config.tables),
                "added_to_config": added,
                "verified": verified,
            }
        )
    return 0 if verified else 1
