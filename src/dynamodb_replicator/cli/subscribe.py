"""``dynamodb-replicator subscribe``: map ENV_* tables' streams to the replicator function."""

from __future__ import annotations

import argparse
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.subscribe import MappingSettings, failed, subscribe

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("subscribe", help="attach the function to ENV_* table streams")
    parser.add_argument("--env", required=True, help="environment prefix: tables ENV_*")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="endpoint for both DynamoDB and Lambda (tests)")
    parser.add_argument("--function", help="default: DynamoDbReplicatorLambda-ENV")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--parallelization-factor", type=int, default=1)
    parser.add_argument("--maximum-retry-attempts", type=int, default=-1)
    parser.add_argument("--maximum-record-age", type=int, default=-1)
    parser.add_argument("--tombstone-suffix", default=".__tombstones")
    parser.add_argument("--state-table", default="dynamodb-replicator-state")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = RegionSpec(args.region, args.endpoint_url)
    function = args.function or f"DynamoDbReplicatorLambda-{args.env}"
    settings = MappingSettings(
        batch_size=args.batch_size,
        parallelization_factor=args.parallelization_factor,
        maximum_retry_attempts=args.maximum_retry_attempts,
        maximum_record_age_in_seconds=args.maximum_record_age,
    )
    steps = subscribe(
        make_client("dynamodb", spec),
        make_client("lambda", spec),
        region=args.region,
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
