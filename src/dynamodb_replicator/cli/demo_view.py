"""What the demo shows: its console, the live per-pair progress table, the regions side by
side with the reason for each winner, and the runner's conflict log."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from dynamodb_replicator.cli.demo_scenario import EXPLANATIONS, FIELDS, REGIONS, TABLE
from dynamodb_replicator.core.policy import stored_version
from dynamodb_replicator.runner.reports import PairTotals

__all__ = ["PIPE_WIDTH", "Snapshot", "demo_console", "progress", "show", "show_conflicts"]

PIPE_WIDTH = 160  # the widest table (the regions side by side) is ~120 columns

# The runner's totals by (table, source, target).
Snapshot = dict[tuple[str, str, str], PairTotals]


def _moved(totals: PairTotals) -> tuple[int, int, int]:
    counts = totals.counters
    return (counts.applied, counts.stale, counts.failed)


def progress(snapshot: Snapshot, elapsed: float, before: Snapshot) -> Table:
    """The pairs between regions; the lag only of pairs that replicated since ``before``
    (the round's start): a gauge kept from an earlier round would be a stale figure.
    A region's own records the runner reads (source == target) are not replication
    between regions: left out."""
    table = Table(title=f"replication progress ({elapsed:4.1f} s)")
    for column in ("source -> target", "applied", "stale", "failed", "conflicts", "lag"):
        table.add_column(column, justify="left" if column.startswith("source") else "right")
    for pair, totals in snapshot.items():
        _, source, target = pair
        if source == target:
            continue
        counts = totals.counters
        # A batch without a lag figure (a delete) keeps the last one: fresh only if it moved.
        fresh = pair not in before or (
            _moved(before[pair]) != _moved(totals) and before[pair].lag_s != totals.lag_s
        )
        lag = "-" if totals.lag_s is None or not fresh else f"{totals.lag_s * 1000:.0f} ms"
        conflicts = f"{counts.lost} lost, {counts.won} won" if counts.lost or counts.won else "-"
        counted = (str(counts.applied), str(counts.stale), str(counts.failed))
        table.add_row(f"{source} -> {target}", *counted, conflicts, lag)
    return table


def demo_console() -> Console:
    """The demo's console: on a terminal its width; through a pipe wide enough that no table
    wraps (rich would otherwise assume 80 columns)."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=PIPE_WIDTH, soft_wrap=True)


def show(console: Console, state: dict[str, dict[str, Any]], base: int) -> None:
    """The regions side by side (each item's version as T+ms from its origin), then why
    each key's winner won."""
    console.line()  # the live progress table ends without one when not on a terminal
    table = Table(title=f"{TABLE} in every region after replication")
    table.add_column("key")
    for region in REGIONS:
        table.add_column(region)
    for key in sorted(EXPLANATIONS):
        cells = []
        for region in REGIONS:
            item = state[region].get(key)
            if item is None:
                cells.append("(deleted)")
                continue
            shown = ", ".join(
                f"{k}={v['S']}"
                for k, v in sorted(item.items())
                if k != "pk" and "S" in v and not k.startswith("__")
            )
            version = stored_version(item, region, FIELDS)
            assert version is not None
            cells.append(f"{shown}\nT+{int(version.timestamp) - base} from {version.origin}")
        table.add_row(key, *cells)
    console.print(table)
    for key, why in EXPLANATIONS.items():
        console.print(f"[bold]{key}[/bold]: {why}")


def show_conflicts(console: Console, log: str, base: int) -> None:
    """The runner's conflict log ``log`` (JSON lines), shortened to a table."""
    table = Table(title="conflict log (the runner's JSON lines, shortened)")
    for column in ("where", "key", "outcome", "change", "other version"):
        table.add_column(column)

    def version(v: dict[str, str] | None, deleted: bool = False) -> str:
        if v is None:
            return "-"
        return f"T+{int(v['timestamp']) - base} from {v['origin']}" + (
            " (delete)" if deleted else ""
        )

    for line in log.splitlines():
        record = json.loads(line)
        table.add_row(
            record["region"],
            record["key"]["pk"]["S"],
            record["outcome"],
            version(record["change"]),
            version(record["other"], record["other_deleted"]),
        )
    console.print(table)
