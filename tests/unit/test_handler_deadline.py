"""The Lambda handler's deadline: it returns only once every write it started has answered
or timed out, so no write of the batch lands after Lambda retried (and settled) it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from dynamodb_replicator.awslambda.handler import deadline_of, process_event
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

DATA = Path(__file__).parent.parent / "data"
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-1")
SUFFIX = ".__tombstones"
REQUEST_TIMEOUT = 2.0  # the slow put's request ends (times out) this long after it started


def _writer(store: MemoryStore) -> StoreWriter:
    protocol = WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, SystemClock(), SUFFIX, 60)
    return StoreWriter(protocol, WriterOptions(max_in_flight=4, backoff=Backoff(attempts=1)))


def test_the_handler_returns_only_after_its_writes_answered() -> None:
    events: list[str] = []
    returned = threading.Event()
    slow = MemoryStore("ap-southeast-1", ("id",))

    def out_long(_store: MemoryStore, call: str) -> None:
        if call == "put Golden" and not events:
            events.append("sent")
            returned.wait(REQUEST_TIMEOUT)  # out until it answers (or its timeout)
            events.append("answered")

    slow.before_call = out_long
    stores = {name: MemoryStore(name, ("id",)) for name in REGIONS[:2]} | {slow.name: slow}
    writers = {name: _writer(store) for name, store in stores.items()}
    replicator = Replicator(
        source=REGIONS[0],
        writers=writers,
        tombstones=TombstoneTable(stores[REGIONS[0]], FIELDS, SUFFIX),
        policy=LastWriterWins(FIELDS),
        fields=FIELDS,
    )
    event: dict[str, Any] = json.loads((DATA / "golden_event.json").read_text())
    try:
        process_event(event, replicator, deadline=SystemClock().now() + 0.3)
        events.append("returned")
    finally:
        returned.set()
        for writer in writers.values():
            writer.close()
    assert events[0] == "sent"  # the slow put was started before the deadline
    assert events[1:] == ["answered", "returned"], "returned while a write was still out"


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_the_last_write_starts_a_request_timeout_before_the_margin() -> None:
    assert deadline_of(_Context(), 1000.0, 5.0) == 1000.0 + 60 - 6 - 5
    assert deadline_of(object(), 1000.0, 5.0) is None
