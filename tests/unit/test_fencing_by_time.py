"""Fencing by time: a request ends before the lease margin does (the config refuses
settings that break it), and settling is held to no deadline: a put that landed after its
writer's deadline is still settled by that writer."""

from __future__ import annotations

from typing import Any

import pytest

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import ItemKey, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.config import parse_config
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE = "T"
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
HERE, THERE = "eu-west-1", "us-east-1"


def _config(**options: Any) -> dict[str, Any]:
    return {"tables": ["Orders"], "regions": [{"name": "a1"}, {"name": "b1"}], **options}


def test_a_request_timeout_as_long_as_the_margin_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(lease_timeout_seconds=30, request_timeout_seconds=7.5))
    message = str(refused.value)
    assert "7.5 s" in message and "lease margin (7.5 s" in message and "\n" not in message


def test_a_role_counts_its_sts_refresh_as_a_second_request() -> None:
    role = {"name": "b1", "role_arn": "arn:aws:iam::111122223333:role/r"}
    options = {"lease_timeout_seconds": 30, "request_timeout_seconds": 4}
    parse_config(_config(**options))  # 4 s < 7.5 s
    with pytest.raises(ConfigError, match=r"twice.*\(8 s\).*7\.5 s"):
        parse_config({**_config(**options), "regions": [{"name": "a1"}, role]})


@pytest.mark.parametrize("lease", [1.0, 3.0, 5.0, 30.0, 600.0])
def test_the_derived_request_timeout_fits_inside_every_lease_margin(lease: float) -> None:
    config = parse_config(_config(lease_timeout_seconds=lease))
    assert 0 < config.request_lifetime < config.lease_margin


def test_a_put_that_landed_after_the_deadline_is_still_settled() -> None:
    """The issue's interleaving: the put is sent just before the deadline; meanwhile the
    lease passes on, the key is deleted (tombstone 5); the put then lands on the absent
    key and answers after the deadline. Its writer must still settle it (P2/P3), or the
    delete stays undone: the new holder settled its own replay before the put landed."""
    store = MemoryStore(HERE)
    clock = ManualClock(222.4)
    deleting = WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, clock, ".__tombstones", 60)

    def meanwhile(_store: MemoryStore, call: str) -> None:
        if call == f"put {TABLE}" and clock.t < 230:
            clock.t = 233.0  # the lease has passed on; region R deletes V5
            deleting.delete(TABLE, DeleteVersion(KEY, Version.of("5", THERE), THERE, "4"))
            assert store.item(TABLE, KEY) is None

    protocol = WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, clock, ".__tombstones", 60)
    options = WriterOptions(max_in_flight=1, backoff=Backoff(attempts=2, base=0.0))
    writer = StoreWriter(protocol, options)
    image = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5"}}
    insert = PutVersion(KEY, Version.of("5", THERE), image, "3")
    store.before_call = meanwhile
    try:
        result = writer.apply(TABLE, [insert], deadline=222.5)
    finally:
        writer.close()
    assert clock.t == 233.0  # the interleaving happened: the put landed after the delete
    assert store.item(TABLE, KEY) is None, "the delete was undone by the late put"
    assert result.failed_sequence is None  # settled: the record may be checkpointed
