"""Options and checks shared by ``diff`` and ``repair``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.cli.options import add_output
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.preflight import key_schema

__all__ = ["Selection", "add_options", "select"]


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options ``diff`` and ``repair`` share."""
    parser.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--regions",
        metavar="A,B,...",
        help="comma-separated regions (default: all; the first is the reference)",
    )
    parser.add_argument(
        "--table", metavar="TABLE", help="one table (default: every configured table)"
    )
    parser.add_argument(
        "--segments",
        type=int,
        default=4,
        metavar="N",
        help="parallel scan segments per region (default: 4)",
    )
    add_output(parser)
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="scan progress on stderr (auto: on when stderr is a terminal, else a line every 10 s)",
    )


@dataclass(frozen=True, slots=True)
class Selection:
    config: RunnerConfig
    regions: tuple[RegionSpec, ...]
    tables: dict[str, list[str]]  # table -> key attribute names


def config_tables(config: RunnerConfig, table: str | None) -> list[str]:
    """The tables a command works on: ``--table`` (one of the config's), else every one."""
    if table and table not in config.tables:
        raise ConfigError(
            f"table {table} is not in the config (tables: {', '.join(config.tables)})"
        )
    return [table] if table else list(config.tables)


def select(args: argparse.Namespace) -> Selection:
    """Regions and tables to compare, checked: known regions, tables present everywhere
    with the same key schema."""
    config = load_config(args.config)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    regions = config.regions
    if args.regions:
        names = [n.strip() for n in args.regions.split(",") if n.strip()]
        unknown = [n for n in names if n not in {r.name for r in config.regions}]
        if unknown:
            raise ConfigError(f"unknown region(s) {unknown}: not in {args.config}")
        regions = tuple(config.region(n) for n in names)
    if len(regions) < 2:
        raise ConfigError("compare at least two regions")
    tables = config_tables(config, args.table)
    keys: dict[str, list[str]] = {}
    for table in tables:
        schemas: dict[str, Any] = {}
        for spec in regions:
            physical = config.replication.names.physical(table, spec.name)
            schemas[spec.name] = key_schema(
                require_table(make_client("dynamodb", spec), physical, spec.name)
            )
        if len(set(map(tuple, schemas.values()))) > 1:
            shown = "; ".join(
                f"{region}: " + ", ".join(" ".join(part) for part in schema)
                for region, schema in schemas.items()
            )
            raise ConfigError(f"table {table} has different key schemas: {shown}")
        keys[table] = [name for name, _, _ in next(iter(schemas.values()))]
    return Selection(config, regions, keys)
