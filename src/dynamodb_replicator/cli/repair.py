"""``dynamodb-replicator repair``: write each differing key's winner where it lags.

Exit 0 when every differing key was repaired (or would be, with ``--dry-run``), 1 when keys
are left undecidable (no region holds a version of them, or, with ``--regions`` and a
residency rule, a tombstone naming a region not read may be a delete or a stand-in: they
are named) or a write repair needed was refused (re-read after a stale write, the key
still needs that very write: it still differs; the keys are named), 2 on an error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Mapping
from typing import Any

from rich.console import Console

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.cli.compare import Selection, add_options, select
from dynamodb_replicator.cli.diff import print_report, report_json
from dynamodb_replicator.cli.options import add_command, print_json, text_console
from dynamodb_replicator.cli.progress import ScanProgress
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.codec import key_from_json
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.ops.diff_scan import scan_and_compare
from dynamodb_replicator.ops.freshness import check_fresh
from dynamodb_replicator.ops.repairer import Repairer, RepairReport

__all__ = ["build_repairer", "print_plan", "register"]


def register(commands: Any) -> None:
    """Add the ``repair`` command."""
    parser = add_command(
        commands,
        "repair",
        help="make lagging regions hold each key's winner (exit 1: keys undecided or refused)",
        examples=[
            "--config replicator.toml --dry-run",
            "--config replicator.toml --table Orders",
            "--config replicator.toml --output json",
            "--config replicator.toml --table Orders --force",
        ],
        run=run,
    )
    add_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="repair even when a region may hold data older than the tombstone TTL",
    )


def print_plan(
    console: Console,
    plan: RepairReport,
    dry_run: bool,
    configured: Collection[str] | None = None,
) -> None:
    """The repair's counts, samples, refused and undecidable keys. ``configured``: the
    config's regions (None: every region named may be added to ``--regions``)."""
    verb = "would write" if dry_run else "wrote"
    puts = ", ".join(f"{r} {n}" for r, n in plan.puts.items()) or "none"
    deletes = ", ".join(f"{r} {n}" for r, n in plan.deletes.items()) or "none"
    console.print(f"  repair {verb}: puts {puts}; deletes {deletes}")
    # The scan's counts include changes in flight; each key is re-read before it is planned.
    console.print(
        f"  not written: {plan.settled} keys that agreed when repair re-read them "
        "(differences that settled: replication in flight)"
    )
    for sample in plan.samples:
        version = sample["version"]
        console.print(
            f"    {sample['region']}: {sample['action']} {json.dumps(sample['key'])} "
            f"version {version['timestamp']} from {version['origin']}",
            markup=False,
            highlight=False,
        )
    if plan.refused:
        console.print(
            f"  [red]refused keys: {plan.refused}[/red] (a write repair needs was refused as "
            "stale: the conditions read the stored item's labels, which outrank the winner; "
            "these keys still differ, see docs/operating/diff-repair.md):"
        )
        for key in plan.refused_keys:
            console.print(f"    {json.dumps(key)}", markup=False, highlight=False)
        if plan.refused > len(plan.refused_keys):
            console.print(f"    ... and {plan.refused - len(plan.refused_keys)} more")
    if plan.unresolved:
        why = _undecidable_why(plan.read_with, configured)
        console.print(f"  [yellow]undecidable keys: {plan.unresolved}[/yellow] ({why}")
        for key in plan.undecidable:
            console.print(f"    {json.dumps(key)}", markup=False, highlight=False)
        if plan.unresolved > len(plan.undecidable):
            console.print(f"    ... and {plan.unresolved - len(plan.undecidable)} more")


def _undecidable_why(read_with: Collection[str], configured: Collection[str] | None) -> str:
    """Why keys are undecidable, and what decides them: a region not read may be added
    to ``--regions``; one no longer in the config cannot (``--regions`` rejects it)."""
    if not read_with:
        return "no region holds a version of them: items without __timestamp?); fix them by hand:"
    addable = sorted(r for r in read_with if configured is None or r in configured)
    removed = sorted(r for r in read_with if configured is not None and r not in configured)
    ways = []
    if addable:
        ways.append(f"repair with {', '.join(addable)} in --regions decides them")
    if removed:
        ways.append(
            f"{', '.join(removed)} not in the config (removed?): re-add it and repair with it, "
            "or repair again once the tombstones naming it expire (tombstone_ttl_seconds)"
        )
    return (
        "a tombstone names a region not repaired, and may be a delete or a residency "
        f"stand-in; {'; '.join(ways)}, or they have no usable __timestamp):"
    )


def build_repairer(
    table: str,
    clients: Mapping[str, Any],
    writers: Mapping[str, Any],
    settings: ReplicationSettings,
    *,
    dry_run: bool,
) -> Repairer:
    """The repair of ``table`` the replication settings describe: their conflict policy,
    system attributes, tombstone suffix, physical table names and the table's residency
    rule. ``clients`` read each region, ``writers`` write it."""
    return Repairer(
        table,
        clients,
        writers,
        policy=settings.policy,
        fields=settings.fields,
        tombstone_suffix=settings.tombstone_suffix,
        dry_run=dry_run,
        names=settings.names,
        rule=settings.residency.rule(table),
    )


def _repair_table(
    args: argparse.Namespace, selection: Selection, table: str, keys: list[str], writers: Any
) -> tuple[Any, RepairReport]:
    settings = selection.config.replication
    clients = {spec.name: make_client("dynamodb", spec) for spec in selection.regions}
    repairer = build_repairer(table, clients, writers, settings, dry_run=args.dry_run)

    def repair_bucket(found: list[str]) -> None:
        repairer([key_from_json(k) for k in found])

    names = [spec.name for spec in selection.regions]
    with ScanProgress(f"repair {table}", names, mode=args.progress) as progress:
        report = scan_and_compare(
            table,
            selection.regions,
            keys,
            fields=settings.fields,
            segments=args.segments,
            on_bucket=repair_bucket,
            on_progress=progress,
            names=settings.names,
            rule=settings.residency.rule(table),
        )
    return report, repairer.report


def run(args: argparse.Namespace) -> int:
    """Compare, and repair each bucket's differing keys as soon as it is compared."""
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
    writers = {spec.name: build_writer(spec, settings) for spec in selection.regions}
    console = text_console()
    output: list[dict[str, Any]] = []
    unresolved = 0
    try:
        for table, keys in selection.tables.items():
            report, plan = _repair_table(args, selection, table, keys, writers)
            unresolved += plan.unresolved + plan.refused
            output.append(
                {
                    "table": table,
                    "diff": report_json(report),
                    "repair": plan.as_json(),
                    "dry_run": args.dry_run,
                }
            )
            if args.output != "json":
                print_report(console, report)
                configured = [spec.name for spec in selection.config.regions]
                print_plan(console, plan, args.dry_run, configured)
    finally:
        for writer in writers.values():
            writer.close()
    if args.output == "json":
        print_json(output)
    return 1 if unresolved else 0
