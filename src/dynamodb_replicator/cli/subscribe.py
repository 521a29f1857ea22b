"""``dynamodb-replicator subscribe``: map the streams of ENV_* tables (``--env prod``:
``prod_Orders``, ...) to the replicator function."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.lambda_mappings import LambdaMappings
from dynamodb_replicator.awslambda.settings import replication_environment
from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.errors import ConfigError, ReplicatorError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.deploy.mapping import DEFAULT_NAME_PREFIX, MappingSettings, function_name
from dynamodb_replicator.deploy.subscribe import Step, failed, subscribe
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]

_DEFAULT = MappingSettings()


def register(commands: Any) -> None:
    """Add the ``subscribe`` command."""
    parser = add_command(
        commands,
        "subscribe",
        help="attach an existing replicator function to the streams of an environment's "
        "tables (ENV_*: --env prod finds prod_Orders, prod_Users, ...)",
        examples=[
            "--env prod --region eu-west-1 --dry-run",
            "--env prod --region eu-west-1 --on-failure arn:aws:s3:::my-failure-bucket",
            "--env staging --region us-east-1 --function my-replicator --output json",
            "--config replicator.toml --region eu-west-1",
        ],
        run=run,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--env", metavar="ENV", help="environment prefix: the tables ENV_*")
    which.add_argument(
        "--config",
        metavar="FILE",
        help="instead of --env: the config's tables, by their names in --region",
    )
    parser.add_argument(
        "--region", default="us-east-1", metavar="REGION", help="region (default: us-east-1)"
    )
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="endpoint for both DynamoDB and Lambda (tests)"
    )
    parser.add_argument(
        "--function",
        metavar="NAME",
        help=f"default: the template's, NAME_PREFIX-REGION ({DEFAULT_NAME_PREFIX}-REGION)",
    )
    parser.add_argument(
        "--name-prefix",
        default=DEFAULT_NAME_PREFIX,
        metavar="PREFIX",
        help=f"the template's NamePrefix, for the default function (default: "
        f"{DEFAULT_NAME_PREFIX})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    add_output(parser)
    for option, default, what in (
        ("--batch-size", _DEFAULT.batch_size, "records per invocation"),
        ("--parallelization-factor", _DEFAULT.parallelization_factor, "batches per shard"),
        ("--maximum-retry-attempts", _DEFAULT.maximum_retry_attempts, "retries of a batch"),
        ("--maximum-record-age", _DEFAULT.maximum_record_age_in_seconds, "seconds"),
    ):
        parser.add_argument(
            option, type=int, default=default, metavar="N", help=f"{what} (default: {default})"
        )
    parser.add_argument(
        "--on-failure",
        metavar="ARN",
        help="on-failure destination: an S3 bucket ARN keeps whole failed batches",
    )
    parser.add_argument(
        "--tombstone-suffix",
        default=ReplicationSettings().tombstone_suffix,
        metavar="SUFFIX",
        help="tables ending with this are tombstone tables, not subscribed (default: %(default)s)",
    )
    parser.add_argument(
        "--state-table",
        default=defaults.STATE_TABLE,
        metavar="TABLE",
        help="the runner's state table, not subscribed (default: %(default)s)",
    )


def _note(function: str, variable: str, found: str, wanted: str, why: str) -> None:
    print(
        f"note: {function} has {variable}={found!r}, the config gives {wanted!r}: set it "
        f"(or deploy the function with `template`) so that it {why}",
        file=sys.stderr,
    )


def _configured(
    config: RunnerConfig | None, region: str, port: LambdaMappings, function: str
) -> list[str]:
    """With ``--config``: its tables by their names in ``region`` (a note on stderr for
    each variable of the function's environment that differs from the config); else none."""
    if config is None:
        return []
    names = replication_environment(config.replication).get("REPLICATOR_TABLE_NAMES", "")
    regions = ",".join(spec.name for spec in config.regions)
    port.require_function(function)
    environment = port.environment(function)
    found = environment.get("REPLICATOR_TABLE_NAMES", "")
    if found != names:
        _note(function, "REPLICATOR_TABLE_NAMES", found, names, "writes to each region's tables")
    found = environment.get("REPLICATOR_REGIONS", "")
    if {r.strip() for r in found.split(",") if r.strip()} != set(regions.split(",")):
        _note(function, "REPLICATOR_REGIONS", found, regions, "replicates to every region")
    return [config.replication.names.physical(t, region) for t in config.tables]


def _spec(args: argparse.Namespace, config: RunnerConfig | None) -> RegionSpec:
    """``--region``, at the endpoint the config gives it (if any; ``--endpoint-url``
    overrides it). The function is subscribed with the process's own credentials."""
    if config is None:
        return RegionSpec(args.region, args.endpoint_url)
    return RegionSpec(args.region, args.endpoint_url or config.region(args.region).endpoint_url)


def _line(step: Step, dry_run: bool) -> str:
    """One step for people: what was (or would be) done, or that nothing was needed."""
    if step.action == "none":
        return f"{step.table}: already subscribed (mapping {step.uuid}): nothing to change"
    if step.action == "refuse":
        return f"{step.table}: refused: {step.detail}"
    changes = " " + ", ".join(f"{k}={v}" for k, v in step.changes.items())
    verb = "would" if dry_run else "did"
    return f"{step.table}: {verb} {step.action} {step.detail}{changes}".rstrip()


def _steps(
    args: argparse.Namespace,
    config: RunnerConfig | None,
    spec: RegionSpec,
    function: str,
    settings: MappingSettings,
) -> list[Step]:
    """The subscription's steps, planned or done."""
    port = LambdaMappings(make_client("dynamodb", spec), make_client("lambda", spec), args.region)
    return list(
        subscribe(
            port,
            env=args.env,
            function=function,
            settings=settings,
            excluded=lambda name: name.endswith(args.tombstone_suffix) or name == args.state_table,
            dry_run=args.dry_run,
            named=_configured(config, args.region, port, function),
        )
    )


def run(args: argparse.Namespace) -> int:
    """Plan or apply, print one line per step; exit 2 when a table was refused."""
    config = load_config(args.config) if args.config else None
    spec = _spec(args, config)
    function = args.function or function_name(args.name_prefix, args.region)
    settings = MappingSettings(
        batch_size=args.batch_size,
        parallelization_factor=args.parallelization_factor,
        maximum_retry_attempts=args.maximum_retry_attempts,
        maximum_record_age_in_seconds=args.maximum_record_age,
        on_failure=args.on_failure,
    )
    try:
        steps = _steps(args, config, spec, function, settings)
    except ReplicatorError as exc:
        if spec.endpoint_url is None or isinstance(exc, ConfigError):
            raise
        # One endpoint serves both APIs here: DynamoDB Local answers Lambda calls with an
        # InternalFailure that names neither the endpoint nor the reason.
        raise ReplicatorError(
            f"{exc} (DynamoDB and Lambda calls both went to {spec.endpoint_url}: it must "
            "serve both, as moto's server does; DynamoDB Local serves only DynamoDB)"
        ) from exc
    if args.output == "json":
        print_json(
            [
                {
                    "table": step.table,
                    "action": step.action,
                    "detail": step.detail,
                    "changes": dict(step.changes),
                    "dry_run": args.dry_run,
                }
                for step in steps
            ]
        )
        return 2 if failed(steps) else 0
    for step in steps:
        print(_line(step, args.dry_run))
    return 2 if failed(steps) else 0
