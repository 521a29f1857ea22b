"""``dynamodb-replicator template``: the CloudFormation template for one source region."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tables import require_table
from dynamodb_replicator.cli.options import add_command
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.mapping import DEFAULT_NAME_PREFIX
from dynamodb_replicator.deploy.package import code_key, file_digest
from dynamodb_replicator.deploy.template import (
    TableKeys,
    TemplateOptions,
    build_template,
    to_yaml,
)
from dynamodb_replicator.files import replace_file
from dynamodb_replicator.runner.config import RunnerConfig, load_config
from dynamodb_replicator.runner.preflight import key_schema

__all__ = ["register"]

FORMATS = ("yaml", "json")


def _format(value: str) -> str:
    if value in FORMATS:
        return value
    raise argparse.ArgumentTypeError(
        f"invalid choice {value!r}: --output is the format, yaml or json; "
        "to write a file use --out-file FILE"
    )


def register(commands: Any) -> None:
    """Add the ``template`` command."""
    parser = add_command(
        commands,
        "template",
        help="print the CloudFormation template of a source region",
        examples=[
            "--config replicator.toml --region eu-west-1 --package dist/replicator-lambda-1a2b.zip",
            "--config replicator.toml --per-target --output json --out-file stack.json",
            "--config replicator.toml --region ap-southeast-1 --with-tables "
            "--schema-from eu-west-1",
        ],
        run=run,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--region", metavar="REGION", help="source region (default: the first configured)"
    )
    parser.add_argument(
        "--output",
        type=_format,
        default="yaml",
        metavar="{yaml,json}",
        help="the template's format (default: yaml)",
    )
    parser.add_argument("--format", dest="output", type=_format, help=argparse.SUPPRESS)
    parser.add_argument(
        "--per-target",
        action="store_true",
        help="one function per target region (isolates a slow region)",
    )
    parser.add_argument(
        "--with-tables",
        action="store_true",
        help="also create the tables and tombstone tables (key schemas read from --schema-from)",
    )
    parser.add_argument(
        "--schema-from",
        metavar="REGION",
        help="with --with-tables: a region where the tables exist already",
    )
    code = parser.add_mutually_exclusive_group()
    code.add_argument(
        "--code-key", metavar="KEY", help="default of CodeS3Key (as printed by package)"
    )
    code.add_argument(
        "--package", metavar="ZIP", help="the zip: CodeS3Key defaults to its content-hashed key"
    )
    parser.add_argument(
        "--name-prefix",
        default=DEFAULT_NAME_PREFIX,
        metavar="PREFIX",
        help="default of NamePrefix: functions are PREFIX-REGION[-to-TARGET]",
    )
    parser.add_argument(
        "--out-file", metavar="FILE", help="write the template to FILE instead of stdout"
    )


def _table_keys(config: RunnerConfig, region: str, source: str | None) -> dict[str, TableKeys]:
    if not source:
        raise ConfigError("--with-tables needs --schema-from REGION: where the tables exist")
    if source == region:
        raise ConfigError(
            f"--schema-from {source} is the region whose stack would create the tables: "
            "name a region where they exist already"
        )
    names = {r.name for r in config.regions}
    spec = config.region(source) if source in names else RegionSpec(source)
    client = make_client("dynamodb", spec)
    physical = config.replication.names.physical
    return {
        t: TableKeys(key_schema(require_table(client, physical(t, source), source)))
        for t in config.tables
    }


def _code_key(package: str) -> str:
    if not Path(package).is_file():
        raise ConfigError(f"--package {package}: no such file (build it with package)")
    return code_key(file_digest(Path(package)))


def run(args: argparse.Namespace) -> int:
    """Print (or write) the template."""
    config = load_config(args.config)
    region = config.region(args.region or config.regions[0].name).name
    keys = _table_keys(config, region, args.schema_from) if args.with_tables else None
    key = _code_key(args.package) if args.package else args.code_key
    if config.replication.conflict_log.destination not in ("-", "off"):
        print(
            f"note: conflict_log = {config.replication.conflict_log.destination!r}: a function "
            "has no lasting file system; it logs conflicts to CloudWatch Logs instead",
            file=sys.stderr,
        )
    own = config.region(region).role
    for spec in config.regions:
        if own is not None and spec.role is None:
            print(
                f"note: {spec.name} has no role_arn: the stack of {region} (account "
                f"{own.account}) writes to it as to a region of its own account",
                file=sys.stderr,
            )
    options = TemplateOptions(
        region,
        per_target=args.per_target,
        with_tables=keys,
        code_key=key,
        name_prefix=args.name_prefix,
    )
    template = build_template(config, options)
    text = json.dumps(template, indent=2) if args.output == "json" else to_yaml(template)
    if args.out_file:
        replace_file(args.out_file, text + "\n")
    else:
        print(text)
    return 0
