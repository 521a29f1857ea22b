"""Wire the write protocol and a Replicator to boto3 clients for a set of regions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from dynamodb_replicator.aws.lean import make_lean_client
from dynamodb_replicator.aws.store import DynamoStore
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Clock, ConflictLog
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.ids import PROCESS_NONCES
from dynamodb_replicator.stamping import replicators_client

__all__ = ["ClientMaker", "build_replicator", "build_writer", "dynamo_store"]

# (service, region, pool=...) -> a client: ``aws.lean.make_lean_client`` by default (its
# send-by instant bounds when a write can land: docs/concepts/guarantees.md, Timing and
# clocks), or ``aws.clients.make_client`` (botocore for every call).
ClientMaker = Callable[..., Any]


def dynamo_store(
    spec: RegionSpec,
    *,
    pool: int = 32,
    client: Any = None,
    settings: ReplicationSettings | None = None,
    make: ClientMaker = make_lean_client,
) -> DynamoStore:
    """The store port on ``spec``'s DynamoDB, addressing the tables by their names there
    (``settings.names``). Errors are retried by the writer, so the store's batched reads
    make one attempt per request. A client of ours only: a stamped one is refused (its
    puts would lose the replica marker, ``stamping.replicators_client``)."""
    settings = settings or ReplicationSettings()
    timeout = settings.request_timeout_seconds
    client = replicators_client(client or make("dynamodb", spec, pool=pool, timeout=timeout))
    tables = settings.names.in_region(spec.name, settings.tombstone_suffix)
    return DynamoStore(client, spec.name, Backoff(attempts=1), tables)


def build_writer(
    spec: RegionSpec,
    settings: ReplicationSettings,
    *,
    max_in_flight: int | None = None,
    stop: threading.Event | None = None,
    clock: Clock | None = None,
    make: ClientMaker = make_lean_client,
    written_before_wait: bool = False,
) -> StoreWriter:
    """A writer into ``spec`` with ``max_in_flight`` writes at once (default: the
    settings' ``max_workers``). A write whose answer was lost is waited out for the
    request lifetime (the settings' request timeout, twice when ``spec`` has a role: the
    STS call a credentials refresh makes inside the call), from when it started."""
    depth = max_in_flight or settings.max_workers
    protocol = WriteProtocol(
        dynamo_store(spec, pool=depth + 4, settings=settings, make=make),
        settings.policy,
        settings.fields,
        clock or SystemClock(),
        settings.tombstone_suffix,
        settings.tombstone_ttl_seconds,
        nonces=PROCESS_NONCES,
    )
    timeout = settings.request_timeout_seconds
    lifetime = defaults.request_lifetime(timeout, any_role=spec.role is not None)
    options = WriterOptions(
        max_in_flight=depth,
        stop=stop,
        request_lifetime=lifetime,
        written_before_wait=written_before_wait,
    )
    return StoreWriter(protocol, options)


def build_replicator(
    source: RegionSpec,
    regions: Sequence[RegionSpec],
    settings: ReplicationSettings,
    *,
    stop: threading.Event | None = None,
    conflict_log: ConflictLog | None = None,
    make: ClientMaker = make_lean_client,
    written_before_wait: bool = False,
) -> Replicator:
    """A Replicator for ``source``'s stream writing to ``regions`` (the source included);
    ``stop`` cuts retries short when the process shuts down; conflicts go to
    ``conflict_log`` (the caller owns it); its clients are made by ``make``;
    ``written_before_wait``: ``WriterOptions`` (the runner's pipeline)."""
    specs = {spec.name: spec for spec in regions}
    specs.setdefault(source.name, source)
    clock = SystemClock()
    writers = {
        name: build_writer(
            spec,
            settings,
            stop=stop,
            clock=clock,
            make=make,
            written_before_wait=written_before_wait,
        )
        for name, spec in specs.items()
    }
    reader = TombstoneTable(
        dynamo_store(source, settings=settings, make=make),
        settings.fields,
        settings.tombstone_suffix,
    )
    return Replicator(
        source=source.name,
        writers=writers,
        tombstones=reader,
        policy=settings.policy,
        fields=settings.fields,
        missing_timestamp=settings.missing_timestamp,
        conflict_log=conflict_log,
        residency=settings.residency,
    )
