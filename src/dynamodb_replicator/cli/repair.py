"""``dynamodb-replicator repair``: write each differing key's winner where it lags."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.cli.compare import add_options, select
from dynamodb_replicator.cli.diff import print_report
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.codec import key_from_json
from dynamodb_replicator.ops.diff import scan_and_compare
from dynamodb_replicator.ops.freshness import check_fresh
from dynamodb_replicator.ops.repair import Repairer

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("repair", help="make lagging regions hold each key's winner")
    add_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="repair even when a region may hold data older than the tombstone TTL",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    selection = select(args)
    settings = selection.config.replication
    if not args.force:
        now = SystemClock().now()
        for table in selection.tables:
            check_fresh(
                table,
                regions=selection.regions,
                every_region=selection.config.regions,
                state_table=selection.config.state_table,
                ttl=settings.tombstone_ttl_seconds,
                now=now,
            )
    clients = {spec.name: make_client("dynamodb", spec) for spec in selection.regions}
    writers = {spec.name: build_writer(spec, settings) for spec in selection.regions}
    console = Console()
    output: list[dict[str, Any]] = []
    try:
        for table, keys in selection.tables.items():
            repairer = Repairer(
                table,
                clients,
                writers,
                policy=settings.policy,
                fields=settings.fields,
                tombstone_suffix=settings.tombstone_suffix,
                dry_run=args.dry_run,
            )

            def repair_bucket(found: list[str], repairer: Repairer = repairer) -> None:
                repairer([key_from_json(k) for k in found])

            report = scan_and_compare(
                table,
                selection.regions,
                keys,
                fields=settings.fields,
                segments=args.segments,
                on_bucket=repair_bucket,
            )
            output.append(
                {
                    "table": table,
                    "diff": report.as_json(),
                    "repair": repairer.report.as_json(),
                    "dry_run": args.dry_run,
                }
            )
            if not args.json:
                print_report(console, report)
                verb = "would write" if args.dry_run else "wrote"
                plan = repairer.report
                console.print(
                    f"  repair {verb}: puts {plan.puts or 0}, deletes "
                    f"{plan.deletes or 0}; undecidable keys: {plan.unresolved}"
                )
                for sample in plan.samples:
                    console.print(f"    {sample}")
    finally:
        for writer in writers.values():
            writer.close()
    if args.json:
        print(json.dumps(output, indent=2))
    return 0
