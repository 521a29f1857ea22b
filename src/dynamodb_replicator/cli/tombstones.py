"""``dynamodb-replicator create-tombstone-tables``: the tombstone tables of a Lambda-only
setup (the runner creates its own at start; the template does with ``--with-tables``).

Idempotent: a table that exists is kept and gets its TTL turned on if it was off.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes, TableNames
from dynamodb_replicator.runner.config import load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``create-tombstone-tables`` command."""
    parser = add_command(
        commands,
        "create-tombstone-tables",
        help="create the tombstone tables (TABLE.__tombstones, with TTL) for a Lambda setup",
        examples=[
            "--config replicator.toml",
            "--tables Orders,Users --regions us-east-1,eu-west-1",
            "--tables Orders --regions us-east-1 --endpoint-url http://127.0.0.1:8000",
        ],
        run=run,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration: its tables and regions"
    )
    parser.add_argument(
        "--tables", metavar="T1,T2", help="comma-separated tables (instead of --config)"
    )
    parser.add_argument(
        "--regions", metavar="R1,R2", help="comma-separated regions (instead of --config)"
    )
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="with --regions: endpoint of every region (tests)"
    )
    parser.add_argument(
        "--tombstone-suffix",
        default=defaults.TOMBSTONE_SUFFIX,
        metavar="SUFFIX",
        help="with --tables: the tombstone table is TABLE+SUFFIX (default: %(default)s)",
    )
    add_output(parser)


@dataclass(frozen=True, slots=True)
class _Request:
    tables: tuple[str, ...]
    regions: tuple[RegionSpec, ...]
    suffix: str
    fields: SystemAttributes
    names: TableNames = field(default_factory=TableNames)


def _names(value: str | None, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (value or "").split(",") if n.strip())
    if not names:
        raise ConfigError(f"{option}: name at least one")
    return names


def _request(args: argparse.Namespace) -> _Request:
    if args.config:
        if args.tables or args.regions or args.endpoint_url:
            raise ConfigError("give --config, or --tables and --regions, not both")
        config = load_config(args.config)
        replication = config.replication
        return _Request(
            config.tables,
            config.regions,
            replication.tombstone_suffix,
            replication.fields,
            replication.names,
        )
    if not (args.tables and args.regions):
        raise ConfigError("give --config FILE, or --tables and --regions")
    regions = tuple(RegionSpec(r, args.endpoint_url) for r in _names(args.regions, "--regions"))
    return _Request(
        _names(args.tables, "--tables"), regions, args.tombstone_suffix, SystemAttributes()
    )


def run(args: argparse.Namespace) -> int:
    """Create what is missing; print one line (or JSON object) per tombstone table."""
    request = _request(args)
    done: list[dict[str, str]] = []
    for spec in request.regions:
        client = make_client("dynamodb", spec)
        for table in request.tables:
            physical = request.names.physical(table, spec.name)
            name = defaults.tombstone_table(physical, request.suffix)
            existed = describe_table(client, name, spec.name) is not None
            ensure_tombstone_table(
                client, physical, region=spec.name, suffix=request.suffix, fields=request.fields
            )
            done.append(
                {
                    "region": spec.name,
                    "table": table,
                    "tombstone_table": name,
                    "action": "found" if existed else "created",
                }
            )
    if args.output == "json":
        print_json(done)
    else:
        for row in done:
            print(f"{row['region']}: {row['tombstone_table']} {row['action']} (TTL on)")
    return 0
