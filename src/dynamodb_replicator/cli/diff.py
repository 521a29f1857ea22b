"""``dynamodb-replicator diff``: are the regions identical? Exit 0 yes, 1 no, 2 error."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from dynamodb_replicator.cli.compare import add_options, select
from dynamodb_replicator.ops.diff import DiffReport, scan_and_compare

__all__ = ["print_report", "register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("diff", help="compare a table across regions")
    add_options(parser)
    parser.set_defaults(run=run)


def print_report(console: Console, report: DiffReport) -> None:
    counts = ", ".join(f"{r}: {n}" for r, n in report.items.items())
    console.print(f"[bold]{report.table}[/bold] items per region: {counts}")
    if report.identical:
        console.print(f"  identical in every region (reference {report.reference})")
        return
    for region, diff in report.regions.items():
        if not (diff.missing or diff.extra or diff.different):
            console.print(f"  {region}: identical to {report.reference}")
            continue
        console.print(
            f"  {region} vs {report.reference}: {diff.missing} missing, "
            f"{diff.extra} extra, {diff.different} different"
        )
        for kind, keys in diff.samples.items():
            for key in keys:
                console.print(f"    {kind}: {key}")


def run(args: argparse.Namespace) -> int:
    selection = select(args)
    fields = selection.config.replication.fields
    reports = [
        scan_and_compare(table, selection.regions, keys, fields=fields, segments=args.segments)
        for table, keys in selection.tables.items()
    ]
    if args.json:
        print(json.dumps([r.as_json() for r in reports], indent=2))
    else:
        console = Console()
        for report in reports:
            print_report(console, report)
    return 0 if all(r.identical for r in reports) else 1
