"""``dynamodb-replicator diff``: are the regions identical? Exit 0 yes, 1 no, 2 error."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from dynamodb_replicator.cli.compare import add_options, select
from dynamodb_replicator.cli.options import add_command, key_object, print_json
from dynamodb_replicator.cli.progress import ScanProgress
from dynamodb_replicator.ops.diff import DiffReport, scan_and_compare

__all__ = ["print_report", "register", "report_json"]


def register(commands: Any) -> None:
    """Add the ``diff`` command."""
    parser = add_command(
        commands,
        "diff",
        help="compare a table across regions (exit 1 when they differ)",
        examples=[
            "--config replicator.toml",
            "--config replicator.toml --regions us-east-1,eu-west-1 --table Orders",
            "--config replicator.toml --output json --segments 16",
        ],
        run=run,
    )
    add_options(parser)


def report_json(report: DiffReport) -> dict[str, Any]:
    """The report as JSON, sample keys as DynamoDB JSON objects."""
    document = report.as_json()
    for region in document.get("regions", {}).values():
        samples = region.get("samples", {})
        for kind, keys in samples.items():
            samples[kind] = [key_object(k) for k in keys]
    return document


def print_report(console: Console, report: DiffReport) -> None:
    """The report for people."""
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
                console.print(f"    {kind}: {key}", markup=False, highlight=False)


def run(args: argparse.Namespace) -> int:
    """Scan and compare every selected table."""
    selection = select(args)
    fields = selection.config.replication.fields
    names = [spec.name for spec in selection.regions]
    reports = []
    for table, keys in selection.tables.items():
        with ScanProgress(f"diff {table}", names, mode=args.progress) as progress:
            reports.append(
                scan_and_compare(
                    table,
                    selection.regions,
                    keys,
                    fields=fields,
                    segments=args.segments,
                    on_progress=progress,
                )
            )
    if args.output == "json":
        print_json([report_json(r) for r in reports])
    else:
        console = Console()
        for report in reports:
            print_report(console, report)
    return 0 if all(r.identical for r in reports) else 1
