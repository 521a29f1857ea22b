"""Lease renewals and claim heartbeats on DynamoDB Local are applied in the order their
holder sent them (``order``, its count), whatever order they land in: a renewal or
heartbeat whose connection dropped may still land after one sent later (its same-tick
retry), and is refused then, so it does not shorten what the later one set, which the
keeper's deadlines rely on; a release moves the lease's token, so a renewal sent before it
and landing after it is refused, and a release is retried with the same token.

A late landing is a request sent with the values, order and condition of an earlier one,
through a store holding the token held then. The conditions are the server's, so tested
on one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, WorkerIdInUseError, ensure_state_table
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.testing.local import DynamoDBLocal

REGION = "eu-west-1"
TABLE = "expiry-order-state"
STREAM = "arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/L"
LEASE_MS = 10_000


@pytest.fixture(scope="module")
def client(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    client = make_client("dynamodb", RegionSpec(REGION, ddb_local.endpoint_url))
    ensure_state_table(client, TABLE, REGION)
    yield client


@pytest.fixture
def shard(request: pytest.FixtureRequest) -> ShardRef:
    return ShardRef("Orders", STREAM, request.node.name)


def store(client: Any, held: dict[str, tuple[str, str]] | None = None) -> DynamoStateStore:
    return DynamoStateStore(client, TABLE, REGION, held=held)


def stored_lease(holder: DynamoStateStore, shard: ShardRef) -> tuple[str, int]:
    (lease,) = (v for k, v in holder.leases().items() if k.endswith(f"|{shard.shard_id}"))
    return lease


def stored_claim(holder: DynamoStateStore, worker: str) -> tuple[int, int]:
    (item,) = (i for i in holder.scan("worker|") if i["pk"]["S"] == f"worker|{worker}")
    return int(item["expires"]["N"]), int(item["margin"]["N"])


def test_a_renewal_landing_after_a_later_one_keeps_the_later_expiry(
    client: Any, shard: ShardRef
) -> None:
    holder = store(client)
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    # The retry (the second sent), landed first: until 15 s.
    assert holder.renew(shard, "w1", 5_000, LEASE_MS, order=2)
    assert stored_lease(holder, shard) == ("w1", 15_000)
    # The first attempt (sent at 2 s, until 12 s) lands now: refused, the lease stays
    # ours and the stored expiry the later one's.
    assert holder.renew(shard, "w1", 2_000, LEASE_MS, order=1)
    assert stored_lease(holder, shard) == ("w1", 15_000)
    assert holder.renew(shard, "w1", 6_000, LEASE_MS, order=3)
    assert stored_lease(holder, shard) == ("w1", 16_000)
    assert not store(client).acquire(shard, "w2", 15_500, LEASE_MS)


def test_a_renewal_landing_after_the_release_is_refused(client: Any, shard: ShardRef) -> None:
    held: dict[str, tuple[str, str]] = {}
    holder = store(client, held)
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    sent = store(client, dict(held))  # the token the renewal carries
    holder.release(shard, "w1")
    assert stored_lease(holder, shard) == ("w1", 0)  # handed back
    assert not sent.renew(shard, "w1", 1_000, LEASE_MS, order=1)  # the renewal lands: refused
    assert stored_lease(holder, shard) == ("w1", 0)
    assert store(client).acquire(shard, "w2", 1_500, LEASE_MS)


def test_a_new_token_starts_its_renewals_count_again(client: Any, shard: ShardRef) -> None:
    first = store(client)
    assert first.acquire(shard, "w1", 0, LEASE_MS)
    assert first.renew(shard, "w1", 1_000, LEASE_MS, order=50)
    # Another process takes the lease once it expired: its first renewal counts from 1.
    second = store(client)
    assert second.acquire(shard, "w2", 20_000, LEASE_MS)
    assert second.renew(shard, "w2", 21_000, LEASE_MS, order=1)
    assert stored_lease(second, shard) == ("w2", 31_000)


class DropsOnce:
    """The client, but its next UpdateItem (once ``armed``) fails with a dropped
    connection before it reaches the table."""

    def __init__(self, client: Any) -> None:
        self.client, self.armed = client, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def update_item(self, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise EndpointConnectionError(endpoint_url="http://state-table")
        return self.client.update_item(**kwargs)


def test_a_release_whose_request_failed_is_sent_again_with_the_same_token(
    client: Any, shard: ShardRef
) -> None:
    dropping = DropsOnce(client)
    holder = DynamoStateStore(dropping, TABLE, REGION, Backoff(attempts=1))  # the keeper's
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    dropping.armed = True
    with pytest.raises(UnreachableError):
        holder.release(shard, "w1")
    # The state this test is about: the release never reached the table.
    assert not dropping.armed and stored_lease(holder, shard) == ("w1", LEASE_MS)
    holder.release(shard, "w1")  # the retry
    assert stored_lease(holder, shard) == ("w1", 0)
    assert store(client).acquire(shard, "w2", 1_000, LEASE_MS)


def test_a_release_landing_after_the_lease_passed_on_is_refused(
    client: Any, shard: ShardRef
) -> None:
    held: dict[str, tuple[str, str]] = {}
    holder = store(client, held)
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    sent = store(client, dict(held))  # the first attempt, as sent: its token
    holder.release(shard, "w1")  # the retry landed first
    assert store(client).acquire(shard, "w2", 1_000, LEASE_MS)
    sent.release(shard, "w1")  # the first attempt lands: refused
    assert stored_lease(holder, shard) == ("w2", 11_000)
    assert not store(client).acquire(shard, "w3", 2_000, LEASE_MS)


def test_a_heartbeat_landing_after_a_later_one_is_refused_and_the_later_one_stands(
    client: Any, shard: ShardRef
) -> None:
    worker = f"w-{shard.shard_id}"
    holder = store(client)
    holder.heartbeat(worker, 20_000, instance="i1", now_ms=10_000, margin_ms=5_000, order=2)
    # The one sent before it (until 15 s, telling of an unreachable region) lands after it:
    # no WorkerIdInUseError, nothing written.
    holder.heartbeat(
        worker,
        15_000,
        {"b": (4.0, "timed out")},
        instance="i1",
        now_ms=5_000,
        margin_ms=5_000,
        order=1,
    )
    assert stored_claim(holder, worker) == (20_000, 5_000)
    assert holder.unreachable_from(10_000)[worker] == {}
    # One sent after both (a reload lengthened the lease: a wider margin) is written.
    holder.heartbeat(worker, 25_000, instance="i1", now_ms=15_000, margin_ms=9_000, order=3)
    assert stored_claim(holder, worker) == (25_000, 9_000)
    with pytest.raises(WorkerIdInUseError) as held:
        store(client).heartbeat(worker, 30_000, instance="i2", now_ms=21_000, order=1)
    assert (held.value.holder, held.value.expires_ms, held.value.margin_ms) == ("i1", 25_000, 9_000)
