"""Helpers of the adversarial tests: one key in one target region (HERE) that other
writers (other regions' replicators, a zombie) reach through the same in-memory tables."""

from __future__ import annotations

import threading

from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins, stored_version
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE, TOMBS, SUFFIX = "T", "T.__tombstones", ".__tombstones"
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
# HERE is the target region under attack; A, B, X are other regions.
HERE, A, B, X = "eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1"
POLICY = LastWriterWins(FIELDS)


def protocol(store: MemoryStore, *, prefetch: bool = True) -> WriteProtocol:
    """The protocol; ``prefetch=False`` skips P0 so late puts land and must be settled."""
    return WriteProtocol(store, POLICY, FIELDS, ManualClock(100.0), SUFFIX, 3600, prefetch=prefetch)


def writer(
    store: MemoryStore,
    *,
    attempts: int = 8,
    prefetch: bool = True,
    stop: threading.Event | None = None,
) -> StoreWriter:
    options = WriterOptions(
        max_in_flight=2, backoff=Backoff(attempts=attempts, base=0.0), stop=stop
    )
    return StoreWriter(protocol(store, prefetch=prefetch), options)


def another_process(store: MemoryStore, *, prefetch: bool = True) -> StoreWriter:
    """A second replicator writing into the same region's tables (no hooks on its calls)."""
    return writer(MemoryStore(store.name, tables=store.tables), prefetch=prefetch)


def v(timestamp: str, origin: str) -> Version:
    return Version.of(timestamp, origin)


def put(version: Version, seq: str) -> PutVersion:
    image: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": version.raw_timestamp}}
    return PutVersion(KEY, version, image, seq)


def delete(version: Version, deleted_in: str, seq: str) -> DeleteVersion:
    return DeleteVersion(KEY, version, deleted_in, seq)


def held(store: MemoryStore) -> Version | None:
    return stored_version(store.item(TABLE, KEY), store.name, FIELDS)
