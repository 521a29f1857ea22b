"""``dynamodb-replicator diff``: are the regions identical? Differences found under live
traffic are settled (``ops/settle.py``): exit 0 when nothing diverged, 1 when something did
(or the settle wait ran out, or an item sits outside its residency scope), 2 on errors.
``diff --residency`` only checks where items live (``ops/residency.py``): exit 0 when no
item of any region sits outside its scope."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console

from dynamodb_replicator.cli.compare import Selection, add_options, select
from dynamodb_replicator.cli.options import add_command, key_object, print_json, text_console
from dynamodb_replicator.cli.progress import ScanProgress
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.ops.diff import DiffReport
from dynamodb_replicator.ops.diff_scan import scan_and_compare
from dynamodb_replicator.ops.residency import ResidencyReport, check_residency
from dynamodb_replicator.ops.settle import SettleReport
from dynamodb_replicator.ops.settle_reads import settle_table

__all__ = [
    "add_settle_options",
    "print_report",
    "print_settle",
    "register",
    "report_json",
    "settle_timeout",
    "settled_diff",
]

SETTLE_TIMEOUT = 60.0


def add_settle_options(parser: argparse.ArgumentParser) -> None:
    """``--settle-timeout`` (and its older name ``--settle-seconds``) and ``--no-settle``."""
    parser.add_argument(
        "--settle-timeout",
        "--settle-seconds",
        dest="settle_timeout",
        type=float,
        default=SETTLE_TIMEOUT,
        help="how long differing keys may wait for replication in flight (default 60 s)",
    )
    parser.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="report the raw comparison: do not wait for replication in flight",
    )


def register(commands: Any) -> None:
    """Add the ``diff`` command."""
    parser = add_command(
        commands,
        "diff",
        help="compare a table across regions (exit 1 when keys diverged)",
        examples=[
            "--config replicator.toml",
            "--config replicator.toml --regions us-east-1,eu-west-1 --table Orders",
            "--config replicator.toml --output json --segments 16",
            "--config replicator.toml --settle-timeout 120",
            "--config replicator.toml --no-settle",
            "--config replicator.toml --residency",
        ],
        run=run,
    )
    add_options(parser)
    add_settle_options(parser)
    parser.add_argument(
        "--residency",
        action="store_true",
        help="only check that no item of any region sits outside its residency scope",
    )


def report_json(report: DiffReport) -> dict[str, Any]:
    """The report as JSON, sample keys as DynamoDB JSON objects."""
    document = report.as_json()
    for region in document.get("regions", {}).values():
        samples = region.get("samples", {})
        for kind, keys in samples.items():
            samples[kind] = [key_object(k) for k in keys]
    settle = document.get("settle") or {}
    for kind, keys in settle.get("samples", {}).items():
        settle["samples"][kind] = [key_object(k) for k in keys]
    return document


def print_report(console: Console, report: DiffReport) -> None:
    """The report for people."""
    counts = ", ".join(f"{r}: {n}" for r, n in report.items.items())
    console.print(f"[bold]{report.table}[/bold] items per region: {counts}")
    if report.identical:
        console.print(f"  identical in every region (reference {report.reference})")
        return
    for region, diff in report.regions.items():
        if diff.identical:
            console.print(f"  {region}: identical to {report.reference}")
            continue
        console.print(
            f"  {region} vs {report.reference}: {diff.missing} missing, "
            f"{diff.extra} extra, {diff.different} different, "
            f"{diff.version} same content under another version, "
            f"{diff.outside} outside its scope"
        )
        for kind, keys in diff.samples.items():
            for key in keys:
                console.print(f"    {kind}: {key}", markup=False, highlight=False)
    if report.settle is not None:
        print_settle(console, report.settle)


def print_settle(console: Console, settle: SettleReport) -> None:
    """The in-flight and diverged counts, and why keys stayed unsettled."""
    checkpoints = settle.method == "checkpoints"
    how = "runner checkpoints" if checkpoints else "re-reading the keys"
    # Re-reading never proves a divergence: no "0 diverged" beside the keys it left open.
    counts = [f"{settle.in_flight} in flight (agree once replication caught up)"]
    if checkpoints:
        counts.append(f"{len(settle.diverged)} diverged")
    if settle.unsettled:
        counts.append(f"{len(settle.unsettled)} unsettled (diverged or lagging)")
    console.print(f"  settled by {how} in {settle.seconds:.1f} s: {', '.join(counts)}")
    for key in settle.diverged[:5]:
        console.print(f"    diverged: {key}", markup=False, highlight=False)
    if settle.unsettled:
        ended = "settle stopped early" if settle.early else "settle wait timed out"
        console.print(f"  [yellow]{ended}[/yellow]: {settle.reason}")
        for key in settle.unsettled[:5]:
            console.print(f"    diverged or lagging: {key}", markup=False, highlight=False)
    if not settle.clean:
        console.print("  `dynamodb-replicator repair` writes each differing key's winner")


def settled_diff(
    selection: Selection,
    table: str,
    key_names: list[str],
    *,
    segments: int,
    timeout: float | None,
    on_progress: Callable[[str, int], None] | None = None,
) -> DiffReport:
    """Scan and compare ``table``; settle the keys that differ for up to ``timeout`` seconds
    (None: do not settle). See ``ops/settle.py``."""
    differing: list[str] = []
    config = selection.config
    fields = config.replication.fields
    rule = config.replication.residency.rule(table)
    report = scan_and_compare(
        table,
        selection.regions,
        key_names,
        fields=fields,
        segments=segments,
        on_bucket=differing.extend,
        on_progress=on_progress,
        names=config.replication.names,
        rule=rule,
    )
    if differing and timeout is not None:
        report.settle = settle_table(
            table,
            differing,
            regions=selection.regions,
            sources=config.regions,
            key_names=key_names,
            fields=fields,
            state_table=config.state_table,
            timeout=timeout,
            names=config.replication.names,
            rule=rule,
        )
    return report


def settle_timeout(args: argparse.Namespace) -> float | None:
    """The settle bound the options ask for; None with ``--no-settle``."""
    if args.settle_timeout < 0:
        raise ConfigError("--settle-timeout must not be negative")
    return args.settle_timeout if args.settle else None


def print_residency(console: Console, report: ResidencyReport) -> None:
    """Per region, the items checked and those outside their scope."""
    rule = "no residency rule" if report.rule is None else f"rule on {report.rule.attribute}"
    console.print(f"[bold]{report.table}[/bold] residency ({rule})")
    for region, checked in report.checked.items():
        console.print(f"  {region}: {checked} items checked, {report.outside[region]} outside")
        for key in report.samples[region]:
            console.print(f"    outside: {key}", markup=False, highlight=False)
    verdict = "every item is within its scope" if report.clean else "items outside their scope"
    console.print(f"  {verdict}" + ("" if report.clean else ": `repair` removes them"))


def run_residency(args: argparse.Namespace, selection: Selection) -> int:
    """``diff --residency``: scan every selected region against the rules."""
    names = [spec.name for spec in selection.regions]
    reports = []
    for table, keys in selection.tables.items():
        with ScanProgress(f"residency {table}", names, mode=args.progress) as progress:
            reports.append(
                check_residency(
                    table,
                    selection.regions,
                    keys,
                    selection.config.replication.residency.rule(table),
                    segments=args.segments,
                    names=selection.config.replication.names,
                    on_progress=progress,
                )
            )
    if args.output == "json":
        print_json([r.as_json() for r in reports])
    else:
        console = Console()
        for report in reports:
            print_residency(console, report)
    return 0 if all(r.clean for r in reports) else 1


def run(args: argparse.Namespace) -> int:
    """Scan and compare every selected table; settle what differs."""
    selection = select(args)
    if args.residency:
        return run_residency(args, selection)
    timeout = settle_timeout(args)
    names = [spec.name for spec in selection.regions]
    reports = []
    for table, keys in selection.tables.items():
        with ScanProgress(f"diff {table}", names, mode=args.progress) as progress:
            reports.append(
                settled_diff(
                    selection,
                    table,
                    keys,
                    segments=args.segments,
                    timeout=timeout,
                    on_progress=progress,
                )
            )
    if args.output == "json":
        print_json([report_json(r) for r in reports])
    else:
        console = text_console()
        for report in reports:
            print_report(console, report)
    return 0 if all(r.clean for r in reports) else 1
