"""``dynamodb-replicator subscribe``: map ENV_* tables' streams to the replicator function."""

from __future__ import annotations

import argparse
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.lambda_mappings import LambdaMappings
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.deploy.mapping import DEFAULT_NAME_PREFIX, MappingSettings, function_name
from dynamodb_replicator.deploy.subscribe import failed, subscribe

__all__ = ["register"]

_DEFAULT = MappingSettings()


def register(commands: Any) -> None:
    """Add the ``subscribe`` command."""
    parser = commands.add_parser("subscribe", help="attach the function to ENV_* table streams")
    parser.add_argument("--env", required=True, help="environment prefix: tables ENV_*")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="endpoint for both DynamoDB and Lambda (tests)")
    parser.add_argument(
        "--function",
        help=f"default: the template's, NAME_PREFIX-REGION ({DEFAULT_NAME_PREFIX}-REGION)",
    )
    parser.add_argument("--name-prefix", default=DEFAULT_NAME_PREFIX)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--batch-size", type=int, default=_DEFAULT.batch_size)
    parser.add_argument(
        "--parallelization-factor", type=int, default=_DEFAULT.parallelization_factor
    )
    parser.add_argument(
        "--maximum-retry-attempts", type=int, default=_DEFAULT.maximum_retry_attempts
    )
    parser.add_argument(
        "--maximum-record-age", type=int, default=_DEFAULT.maximum_record_age_in_seconds
    )
    parser.add_argument(
        "--on-failure",
        metavar="ARN",
        help="on-failure destination: an S3 bucket ARN keeps whole failed batches",
    )
    parser.add_argument("--tombstone-suffix", default=ReplicationSettings().tombstone_suffix)
    parser.add_argument("--state-table", default="dynamodb-replicator-state")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan or apply, print one line per step; exit 2 when a table was refused."""
    spec = RegionSpec(args.region, args.endpoint_url)
    function = args.function or function_name(args.name_prefix, args.region)
    settings = MappingSettings(
        batch_size=args.batch_size,
        parallelization_factor=args.parallelization_factor,
        maximum_retry_attempts=args.maximum_retry_attempts,
        maximum_record_age_in_seconds=args.maximum_record_age,
        on_failure=args.on_failure,
    )
    port = LambdaMappings(make_client("dynamodb", spec), make_client("lambda", spec), args.region)
    steps = subscribe(
        port,
        env=args.env,
        function=function,
        settings=settings,
        excluded=lambda name: name.endswith(args.tombstone_suffix) or name == args.state_table,
        dry_run=args.dry_run,
    )
    verb = "would" if args.dry_run else "did"
    for step in steps:
        changes = f" {dict(step.changes)}" if step.changes else ""
        print(f"{step.table}: {verb} {step.action} {step.detail}{changes}".rstrip())
    return 2 if failed(steps) else 0
