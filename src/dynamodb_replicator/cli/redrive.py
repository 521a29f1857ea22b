"""``dynamodb-replicator redrive --config FILE``: replay parked records (every source
region's state table) and, with ``--failure-store``, the Lambda's captured batches, through
the same Replicator as the stream; remove what reached every target. Exit 0 when nothing
is left failing, 1 when something still fails, 2 on an error."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.aws.failure_store import FailureStore
from dynamodb_replicator.aws.parked import DynamoParkingLot
from dynamodb_replicator.cli.options import add_command, add_output, key_object, print_json
from dynamodb_replicator.core.codec import key_from_json, table_name_from_arn
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.ops.redrive import Replay, newest_per_key, redrive
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]

EXIT_LEFT = 1


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "redrive",
        help="replay parked records and the Lambda's captured batches",
        description="Replay parked records (runner) and captured batches (Lambda failure "
        "store) through the replicator; safe in any order and repeatable. Exit 0 when "
        "nothing is left failing, 1 when something still fails, 2 on an error.",
        examples=[
            "--config prod.toml --dry-run",
            "--config prod.toml",
            "--config prod.toml --failure-store s3://my-bucket/replicator",
        ],
        run=run,
    )
    parser.add_argument("--config", required=True, help="the runner's TOML configuration")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    parser.add_argument(
        "--failure-store",
        action="append",
        default=[],
        metavar="s3://BUCKET[/PREFIX]",
        help="a Lambda failure store to replay too (repeatable)",
    )
    parser.add_argument(
        "--failure-store-region", help="the bucket's region (default: the first region)"
    )
    parser.add_argument("--s3-endpoint-url", help="an S3 endpoint (for local testing)")
    add_output(parser)


def _parked(config: RunnerConfig) -> Iterator[Replay]:
    """The newest parked record of each key (the older ones go when it is replayed)."""
    for spec in config.regions:
        lot = DynamoParkingLot(make_client("dynamodb", spec), config.state_table, spec.name)
        for parked, older in newest_per_key(lot.parked(list(config.tables))):
            superseded = f" (and {len(older)} older version(s) it supersedes)" if older else ""
            yield Replay(
                f"parked {parked.table} {parked.source} sequence {parked.sequence} "
                f"key {parked.key or '?'}{superseded}",
                parked.table,
                parked.source,
                [parked.record],
                parked.targets,
                parked.key,
                remove=functools.partial(_remove, lot, (parked, *older)),
                removes=1 + len(older),
            )


def _remove(lot: DynamoParkingLot, records: tuple[ParkedRecord, ...]) -> None:
    for record in records:
        lot.remove(record)


def _replay_json(replay: Replay) -> dict[str, Any]:
    return {
        "label": replay.label,
        "table": replay.table,
        "source": replay.source,
        "key": key_object(replay.key) if replay.key else None,
        "records": len(replay.records),
    }


def _captured(args: argparse.Namespace, config: RunnerConfig) -> Iterator[Replay]:
    region = args.failure_store_region or config.regions[0].name
    client = make_client("s3", RegionSpec(region, args.s3_endpoint_url))
    for url in args.failure_store:
        if not url.startswith("s3://") or len(url) <= 5:
            raise ConfigError(f"--failure-store must look like s3://BUCKET[/PREFIX], got {url}")
        bucket, _, prefix = url[5:].partition("/")
        store = FailureStore(client, bucket, prefix, region)
        for batch in store.batches():
            label = f"s3://{bucket}/{batch.key}"
            if not batch.records:
                info = json.dumps(dict(batch.batch_info), sort_keys=True)
                print(f"{label}: metadata only, no records to replay: {info}")
                continue
            first = batch.records[0]
            source = str(first.get("awsRegion", ""))
            physical = table_name_from_arn(str(first.get("eventSourceARN", "")))
            table = config.replication.names.logical(physical, source)
            yield Replay(
                label, table, source, list(batch.records),
                remove=lambda s=store, k=batch.key: s.remove(k),  # type: ignore[misc]
            )  # fmt: skip


def _reader(config: RunnerConfig) -> Any:
    clients = {spec.name: make_client("dynamodb", spec) for spec in config.regions}

    def read(table: str, source: str, key: str) -> Mapping[str, Any] | None:
        physical = config.replication.names.physical(table, source)
        with translated(source, f"GetItem on {physical}"):
            found = clients[source].get_item(
                TableName=physical, Key=key_from_json(key), ConsistentRead=True
            )
        item: Mapping[str, Any] | None = found.get("Item")
        return item

    return read


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    replays = [*_parked(config), *_captured(args, config)]
    for replay in replays:
        if replay.source not in {spec.name for spec in config.regions}:
            raise ConfigError(f"{replay.label}: source region {replay.source!r} is not configured")
    replicators: dict[str, Replicator] = {}
    try:
        if not args.dry_run:
            for spec in config.regions:
                replicators[spec.name] = build_replicator(spec, config.regions, config.replication)
        summary = redrive(replays, replicators, _reader(config), dry_run=args.dry_run)
    finally:
        for replicator in replicators.values():
            replicator.close()
    if args.output == "json":
        print_json(
            {
                "dry_run": args.dry_run,
                "replays": [_replay_json(r) for r in replays],
                "replayed": summary.replayed,
                "records": summary.records,
                "applied": summary.applied,
                "already_there": summary.stale,
                "removed": summary.removed,
                "still_failing": [{**_replay_json(r), "reason": why} for r, why in summary.failed],
            }
        )
        return EXIT_LEFT if summary.failed else 0
    for replay in replays if args.dry_run else ():
        print(f"would replay: {replay.label} ({len(replay.records)} records)")
    for line in summary.lines(dry_run=args.dry_run):
        print(line)
    return EXIT_LEFT if summary.failed else 0
