"""``dynamodb-replicator version-items``: give existing items without ``__timestamp`` one.

Run it in each region before turning replication on for a table that already holds data,
with the same ``--timestamp`` everywhere. Exit 0 when every item carries a version, 130
when interrupted (``--resume`` continues), 2 on errors.
"""

from __future__ import annotations

import argparse
import shlex
import threading
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import RateLimiter
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.cli.compare import config_tables
from dynamodb_replicator.cli.interrupt import Interruption
from dynamodb_replicator.cli.options import add_command, add_output, print_json, text_console
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.ops.versioning import Versioner
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "version-items",
        help="give existing items without __timestamp one (run before replicating)",
        description="Give every item without __timestamp one, in place: a conditional "
        "UpdateItem per item (never over a write made meanwhile), a parallel, rate-limited "
        "scan. Every region must get the same --timestamp. Each run scans the whole table; "
        "--resume continues a run that was interrupted (Ctrl-C), with its timestamp.",
        examples=[
            "--config replicator.toml --region eu-west-1 --timestamp 1700000000000",
            "--config replicator.toml --region eu-west-1 --resume",
        ],
        run=run,
    )
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--region", required=True, help="the region whose tables to version")
    parser.add_argument("--table", help="one table (default: every configured table)")
    parser.add_argument(
        "--timestamp",
        help="the __timestamp to give (epoch ms), the same in every region; older than any "
        "later write. Required, except with --resume",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run (and its timestamp) where it stopped",
    )
    parser.add_argument("--segments", type=int, default=4, help="parallel scan segments")
    parser.add_argument(
        "--max-wcu", type=float, default=None, help="at most this many writes per second"
    )
    add_output(parser)


def _note(table: str) -> str:
    return f"version-items:{table}"


def _given_timestamp(args: argparse.Namespace) -> str:
    """A new run's timestamp: --timestamp, checked before anything is read or written."""
    if args.timestamp is None:
        now = int(SystemClock().now() * 1000)
        raise ConfigError(
            "--timestamp is required: every region must give its items the same one "
            f"(for example --timestamp {now}, then the same value in the other regions)"
        )
    if not args.timestamp.isdigit():
        raise ConfigError(f"--timestamp must be epoch milliseconds, got {args.timestamp!r}")
    return str(args.timestamp)


def _resumed_timestamp(args: argparse.Namespace, state: DynamoStateStore, tables: list[str]) -> str:
    """With --resume: the interrupted run's timestamp."""
    notes = {table: state.load_note(_note(table)) or "" for table in tables}
    running = {note.split()[1] for note in notes.values() if note.startswith("running ")}
    if not running:
        raise ConfigError(
            f"--resume: no interrupted version-items run in {args.region} (a finished run is "
            "not resumed): run it again with --timestamp"
        )
    timestamp = max(running, key=int)
    if args.timestamp is not None and args.timestamp != timestamp:
        raise ConfigError(
            f"--resume: the interrupted run gives __timestamp {timestamp}, not {args.timestamp}"
        )
    return timestamp


def _resume_command(args: argparse.Namespace) -> str:
    words = ["dynamodb-replicator", "version-items", "--config", args.config]
    words += ["--region", args.region, "--segments", str(args.segments)]
    if args.table:
        words += ["--table", args.table]
    if args.max_wcu:
        words += ["--max-wcu", f"{args.max_wcu:g}"]
    return shlex.join([*words, "--resume"])


def _version_table(context: _Context, table: str, resume: bool, console: Console) -> dict[str, int]:
    """Version one table (resumed or from the beginning); its counts."""
    args, client, spec = context.args, context.client, context.spec
    physical = context.config.replication.names.physical(table, spec.name)
    described = require_table(client, physical, spec.name)
    keys = [k["AttributeName"] for k in described["KeySchema"]]
    context.state.save_note(_note(table), f"running {context.timestamp}")
    with Progress(
        TextColumn(f"{table} in {spec.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,  # through a pipe: the result line says the same
    ) as progress:
        task = progress.add_task("scan", total=described.get("ItemCount") or None)
        stats = Versioner(
            client,
            spec.name,
            table,
            keys,
            context.timestamp,
            context.state,
            physical=physical,
            fields=context.config.replication.fields,
            limiter=RateLimiter(args.max_wcu, stop=context.stop),
            stop=context.stop,
            on_items=lambda n: progress.advance(task, n),
        ).run(args.segments, resume=resume)
    if not context.stop.is_set():
        context.state.save_note(_note(table), f"finished {context.timestamp}")
    return {
        "scanned": stats.scanned,
        "versioned": stats.versioned,
        "already_versioned": stats.already,
        "changed_meanwhile": stats.raced,
    }


@dataclass(frozen=True, slots=True)
class _Context:
    args: argparse.Namespace
    config: RunnerConfig
    spec: RegionSpec
    client: Any
    state: DynamoStateStore
    timestamp: str
    stop: threading.Event


def _print(args: argparse.Namespace, region: str, ts: str, results: dict[str, Any]) -> None:
    if args.output == "json":
        print_json({"region": region, "timestamp": ts, "tables": results})
        return
    for table, counts in results.items():
        print(
            f"{table} in {region}: {counts['versioned']} versioned with __timestamp "
            f"{ts}, {counts['already_versioned']} already versioned, "
            f"{counts['changed_meanwhile']} changed meanwhile (left as they are)"
        )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    spec = config.region(args.region)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    tables = config_tables(config, args.table)
    given = None if args.resume else _given_timestamp(args)
    client = make_client("dynamodb", spec, pool=args.segments + 4)
    for table in tables:  # before the state table is made: a bad run leaves nothing behind
        require_table(client, config.replication.names.physical(table, spec.name), spec.name)
    ensure_state_table(client, config.state_table, spec.name)
    state = DynamoStateStore(client, config.state_table, spec.name)
    timestamp = given or _resumed_timestamp(args, state, tables)
    console = text_console(stderr=True)
    console.print(
        f"giving items without one __timestamp {timestamp}: use the same in every other "
        f"region (--timestamp {timestamp})"
    )
    results: dict[str, dict[str, int]] = {}
    with Interruption(resume=_resume_command(args)) as interruption:
        context = _Context(args, config, spec, client, state, timestamp, interruption.stop)
        for table in tables:
            note = state.load_note(_note(table)) if args.resume else None
            if note == f"finished {timestamp}":
                continue  # finished before the interruption
            resume = note == f"running {timestamp}"
            results[table] = _version_table(context, table, resume, console)
            if interruption.stop.is_set():
                _print(args, spec.name, timestamp, results)
                return interruption.report()
    _print(args, spec.name, timestamp, results)
    return 0
