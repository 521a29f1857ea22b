"""``dynamodb-replicator version-items``: give existing items without ``__timestamp`` one.

Run it in each region before turning replication on for a table that already holds data.
Exit 0 when every item carries a version, 2 on errors.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.scan import RateLimiter
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.ops.versioning import Versioner
from dynamodb_replicator.runner.config import load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "version-items",
        help="give existing items without __timestamp one (run before replicating)",
        description="Give every item without __timestamp one, in place: a conditional "
        "UpdateItem per item (never over a write made meanwhile), a parallel, rate-limited, "
        "resumable scan. Use the same --timestamp in every region.",
        examples=["--config replicator.toml --region eu-west-1 --timestamp 1700000000000"],
        run=run,
    )
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--region", required=True, help="the region whose tables to version")
    parser.add_argument("--table", help="one table (default: every configured table)")
    parser.add_argument(
        "--timestamp",
        help="the __timestamp to give (epoch ms; default: now). Older than any later write",
    )
    parser.add_argument("--segments", type=int, default=4, help="parallel scan segments")
    parser.add_argument(
        "--max-wcu", type=float, default=None, help="at most this many writes per second"
    )
    add_output(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    spec = config.region(args.region)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    timestamp = args.timestamp or str(int(SystemClock().now() * 1000))
    if not timestamp.isdigit():
        raise ConfigError(f"--timestamp must be epoch milliseconds, got {timestamp!r}")
    client = make_client("dynamodb", spec, pool=args.segments + 4)
    ensure_state_table(client, config.state_table, spec.name)
    state = DynamoStateStore(client, config.state_table, spec.name)
    console = Console(stderr=True)
    results: dict[str, dict[str, int]] = {}
    for table in [args.table] if args.table else list(config.tables):
        physical = config.replication.names.physical(table, spec.name)
        described = require_table(client, physical, spec.name)
        keys = [k["AttributeName"] for k in described["KeySchema"]]
        total = described.get("ItemCount") or None
        with Progress(
            TextColumn(f"{table} in {spec.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("scan", total=total)

            def advance(n: int, task_id: Any = task) -> None:
                progress.advance(task_id, n)

            versioner = Versioner(
                client,
                spec.name,
                table,
                keys,
                timestamp,
                state,
                physical=physical,
                fields=config.replication.fields,
                limiter=RateLimiter(args.max_wcu),
                stop=threading.Event(),
                on_items=advance,
            )
            stats = versioner.run(args.segments)
        results[table] = {
            "scanned": stats.scanned,
            "versioned": stats.versioned,
            "already_versioned": stats.already,
            "changed_meanwhile": stats.raced,
        }
    if args.output == "json":
        print_json({"region": spec.name, "timestamp": timestamp, "tables": results})
    else:
        for table, counts in results.items():
            print(
                f"{table} in {spec.name}: {counts['versioned']} versioned with __timestamp "
                f"{timestamp}, {counts['already_versioned']} already versioned, "
                f"{counts['changed_meanwhile']} changed meanwhile (left as they are)"
            )
    return 0
