"""Wire a Replicator to boto3 clients for a set of regions."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tombstones import DynamoTombstoneReader
from dynamodb_replicator.aws.writer import DynamoWriter, WriterOptions
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import ConflictLog
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.settings import ReplicationSettings

__all__ = ["build_replicator"]


def build_replicator(
    source: RegionSpec,
    regions: Sequence[RegionSpec],
    settings: ReplicationSettings,
    *,
    stop: threading.Event | None = None,
    conflict_log: ConflictLog | None = None,
) -> Replicator:
    """A Replicator for ``source``'s stream writing to ``regions`` (the source included);
    ``stop`` cuts retries short when the process shuts down; conflicts go to
    ``conflict_log`` (the caller owns it)."""
    options = WriterOptions(
        tombstone_suffix=settings.tombstone_suffix,
        tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
        max_workers=settings.max_workers,
        stop=stop,
    )
    specs = {spec.name: spec for spec in regions}
    specs.setdefault(source.name, source)
    clock = SystemClock()
    writers = {
        name: DynamoWriter(
            name,
            make_client("dynamodb", spec, pool=settings.max_workers + 4),
            policy=settings.policy,
            fields=settings.fields,
            clock=clock,
            options=options,
        )
        for name, spec in specs.items()
    }
    reader = DynamoTombstoneReader(
        make_client("dynamodb", source), source.name, settings.fields, settings.tombstone_suffix
    )
    return Replicator(
        source=source.name,
        writers=writers,
        tombstones=reader,
        policy=settings.policy,
        fields=settings.fields,
        missing_timestamp=settings.missing_timestamp,
        conflict_log=conflict_log,
    )
