"""``dynamodb-replicator status --config FILE``: lag, backlog, errors, parked records and
shard owners per table and region pair, from the state tables. Exit 0 healthy, 1 a pair is
stuck or a parked record waits, 2 error: status cannot observe (no usable credentials, or
no region's state readable), said once, 3 nothing is stuck or parked but no runner has run
in some region yet (its pairs say NOT STARTED)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.parked import DynamoParkingLot
from dynamodb_replicator.aws.report_items import PREFIX, report_from_item
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ConfigError, NotFoundError, ReplicatorError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.ops.status import (
    Lease,
    RegionState,
    summarize,
)
from dynamodb_replicator.ops.status_report import render_text, to_json
from dynamodb_replicator.runner.config import load_config

__all__ = ["read_region", "register"]

log = logging.getLogger(__name__)

EXIT_STUCK = 1
EXIT_NOT_STARTED = 3


def register(commands: Any) -> None:
    """Add the ``status`` command."""
    parser = add_command(
        commands,
        "status",
        help="replication health per table and region pair (exit 1 when a pair is stuck)",
        examples=[
            "--config replicator.toml",
            "--config replicator.toml --output json",
            "--config replicator.toml --stuck-after 300",
        ],
        run=run,
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the runner's TOML configuration"
    )
    add_output(parser)
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a pair with waiting records and no progress for this long is stuck (default 60)",
    )


def read_region(
    spec: RegionSpec, state_table: str, tables: Collection[str], now: float
) -> RegionState:
    """The reports and leases of ``tables`` and the live workers in one region's state table."""
    store = DynamoStateStore(
        make_client("dynamodb", spec), state_table, spec.name, backoff=Backoff(attempts=2)
    )
    try:
        items = store.scan(PREFIX)
        leases = store.leases()
        workers = store.unreachable_from(int(now * 1000))
        parked = DynamoParkingLot(
            store.client, state_table, spec.name, backoff=Backoff(attempts=2)
        ).parked(list(tables))
    except ConfigError:
        raise  # no credentials, or rejected ones: nothing can be observed (exit 2)
    except NotFoundError:  # a new setup, not a broken one: say what to do
        return RegionState(
            absent=True,
            error=f"no state table {state_table} in {spec.name}: no runner has run there "
            "yet (start one: dynamodb-replicator run --config FILE)",
        )
    except ReplicatorError as exc:
        return RegionState(error=str(exc))
    reports = []
    for item in items:
        try:
            reports.append(report_from_item(item))
        except (KeyError, ValueError, TypeError):
            log.warning("unreadable shard report skipped", extra={"region": spec.name})
    return RegionState(
        reports=tuple(reports),
        leases=tuple(
            Lease(shard, owner, expires / 1000)
            for shard, (owner, expires) in sorted(leases.items())
            if shard.split("|", 1)[0] in tables
        ),
        workers=tuple(sorted(workers)),
        unreachable=tuple(
            (worker, region, since, why)
            for worker, regions in sorted(workers.items())
            for region, (since, why) in sorted(regions.items())
        ),
        parked=tuple(parked),
    )


def run(args: argparse.Namespace) -> int:
    """Read every region's state table and print the health of each pair."""
    if args.stuck_after <= 0:
        raise ReplicatorError("--stuck-after must be positive")
    config = load_config(args.config)
    now = SystemClock().now()
    with ThreadPoolExecutor(max_workers=len(config.regions)) as pool:
        futures = {
            spec.name: pool.submit(read_region, spec, config.state_table, config.tables, now)
            for spec in config.regions
        }
        states = {name: future.result() for name, future in futures.items()}
    errors = sorted({state.error for state in states.values() if state.error is not None})
    if all(state.error is not None for state in states.values()):
        raise ReplicatorError(f"cannot read the state in any region: {'; '.join(errors)}")
    pairs = summarize(config.tables, states, now=now, stuck_after=args.stuck_after)
    if args.output == "json":
        print_json(to_json(pairs, states, now=now))
    else:
        print(render_text(pairs, states, now=now))
    waiting = any(state.parked for state in states.values())
    if waiting or any(p.stuck for p in pairs):
        return EXIT_STUCK
    return EXIT_NOT_STARTED if any(not p.started for p in pairs) else 0
