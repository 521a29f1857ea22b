"""Lease and claim expiries on DynamoDB Local after one renewal sent while the wall clock
was stepped forward (a VM resumed with a stale-ahead clock, an NTP step later undone).

The state table only ever raises an expiry (aws/state.py: a renewal or heartbeat landing
after a later one must not shorten it). So the expiry written under the stepped clock
stays, however the clock is set back: the renewals after it are refused (and read as
renewed). Should the process then die, its shards are held, and its worker id refused to a
restart on another machine, for as long as the step was, not one lease past its last
renewal as before. A later-sent renewal could be told from an earlier one by an order of
its own (a counter per lease or claim) rather than by its expiry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, WorkerIdInUseError, ensure_state_table
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.testing.local import DynamoDBLocal

REGION = "eu-west-1"
TABLE = "clock-step-state"
STREAM = "arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/L"
LEASE_MS = 10_000
STEP_MS = 3_600_000  # the wall clock ran an hour ahead for one renewal


@pytest.fixture(scope="module")
def client(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    client = make_client("dynamodb", RegionSpec(REGION, ddb_local.endpoint_url))
    ensure_state_table(client, TABLE, REGION)
    yield client


def store(client: Any) -> DynamoStateStore:
    return DynamoStateStore(client, TABLE, REGION)


@pytest.mark.xfail(
    strict=True,
    reason="renewals only ever raise the stored expiry: one sent under a wall clock stepped "
    "forward pins the lease that far ahead, and a holder that dies after the clock came back "
    "keeps its shard from every other worker until then",
)
def test_a_lease_renewed_under_a_clock_stepped_forward_is_free_a_lease_after_its_holder_died(
    client: Any,
) -> None:
    shard = ShardRef("Orders", STREAM, "stepped-lease")
    holder = store(client)
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    assert holder.renew(shard, "w1", STEP_MS, LEASE_MS)  # the clock an hour ahead
    # The clock is set back; the holder renews twice more, then dies (no release).
    assert holder.renew(shard, "w1", 2_000, LEASE_MS)
    assert holder.renew(shard, "w1", 4_000, LEASE_MS)  # its last renewal: until 14 s
    # The state the test is about: the holder believes its lease ends at 14 s.
    ((owner, _),) = (v for k, v in holder.leases().items() if k.endswith("|stepped-lease"))
    assert owner == "w1"
    assert store(client).acquire(shard, "w2", 4_000 + 2 * LEASE_MS, LEASE_MS)


@pytest.mark.xfail(
    strict=True,
    reason="claim heartbeats only ever raise the stored expiry: one sent under a wall clock "
    "stepped forward pins the claim that far ahead, and a restart of a dead process on "
    "another machine (not provably dead) is refused the worker id until then",
)
def test_a_claim_renewed_under_a_clock_stepped_forward_is_free_a_lease_after_its_holder_died(
    client: Any,
) -> None:
    holder = store(client)
    holder.heartbeat("w-step", LEASE_MS, instance="i1", now_ms=0, margin_ms=2_500)
    holder.heartbeat("w-step", STEP_MS + LEASE_MS, instance="i1", now_ms=STEP_MS, margin_ms=2_500)
    holder.heartbeat("w-step", 4_000 + LEASE_MS, instance="i1", now_ms=4_000, margin_ms=2_500)
    # i1 dies; i2 starts on another machine a lease after i1's last heartbeat's expiry.
    restart = store(client)
    try:
        restart.heartbeat("w-step", 40_000, instance="i2", now_ms=4_000 + 2 * LEASE_MS)
    except WorkerIdInUseError as held:
        pytest.fail(f"claim still held by {held.holder} until {held.expires_ms} ms")
