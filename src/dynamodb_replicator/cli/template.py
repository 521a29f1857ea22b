"""``dynamodb-replicator template``: the CloudFormation template for one source region."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.deploy.template import (
    TableKeys,
    TemplateOptions,
    build_template,
    to_yaml,
)
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.preflight import key_schema

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("template", help="print the CloudFormation template of a region")
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--region", help="source region (default: the first configured)")
    parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
    parser.add_argument(
        "--per-target",
        action="store_true",
        help="one function per target region (isolates a slow region)",
    )
    parser.add_argument(
        "--with-tables",
        action="store_true",
        help="also create the tables and tombstone tables (key schemas are read "
        "from the configured region)",
    )
    parser.add_argument("--output", help="write to this file instead of stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    region = config.region(args.region or config.regions[0].name)
    keys = None
    if args.with_tables:
        client = make_client("dynamodb", region)
        keys = {
            t: TableKeys(key_schema(require_table(client, t, region.name))) for t in config.tables
        }
    template = build_template(
        config, TemplateOptions(region.name, per_target=args.per_target, with_tables=keys)
    )
    text = json.dumps(template, indent=2) if args.format == "json" else to_yaml(template)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0
