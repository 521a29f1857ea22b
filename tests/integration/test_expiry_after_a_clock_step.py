"""Lease and claim expiries on DynamoDB Local after one renewal sent while the wall clock
was stepped forward (a VM resumed with a stale-ahead clock, an NTP step later undone).

The state table applies a lease's renewals and a claim's heartbeats in the order their
holder sent them (aws/state.py), not by their expiries: the renewals sent after the clock
came back store their own, lower expiries. Should the process then die, its shards are
free, and its worker id to a restart on another machine, one lease after its last
renewal, not after the whole step. Were the expiry only ever raised (the rule before),
the one sent under the stepped clock would stay, and every later one be refused."""

from __future__ import annotations

import functools
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


def test_a_lease_renewed_under_a_clock_stepped_forward_is_free_a_lease_after_its_holder_died(
    client: Any,
) -> None:
    shard = ShardRef("Orders", STREAM, "stepped-lease")
    holder = store(client)
    assert holder.acquire(shard, "w1", 0, LEASE_MS)
    assert holder.renew(shard, "w1", STEP_MS, LEASE_MS, order=1)  # the clock an hour ahead
    # The clock is set back; the holder renews twice more, then dies (no release).
    assert holder.renew(shard, "w1", 2_000, LEASE_MS, order=2)
    assert holder.renew(shard, "w1", 4_000, LEASE_MS, order=3)  # its last renewal: until 14 s
    # The state the test is about: the holder believes its lease ends at 14 s.
    ((owner, _),) = (v for k, v in holder.leases().items() if k.endswith("|stepped-lease"))
    assert owner == "w1"
    assert store(client).acquire(shard, "w2", 4_000 + 2 * LEASE_MS, LEASE_MS)


def test_a_claim_renewed_under_a_clock_stepped_forward_is_free_a_lease_after_its_holder_died(
    client: Any,
) -> None:
    holder = store(client)
    beat = functools.partial(holder.heartbeat, "w-step", instance="i1", margin_ms=2_500)
    beat(LEASE_MS, now_ms=0, order=1)
    beat(STEP_MS + LEASE_MS, now_ms=STEP_MS, order=2)  # the clock an hour ahead
    beat(4_000 + LEASE_MS, now_ms=4_000, order=3)  # set back: its last heartbeat
    # i1 dies; i2 starts on another machine a lease after i1's last heartbeat's expiry.
    restart = store(client)
    try:
        restart.heartbeat("w-step", 40_000, instance="i2", now_ms=4_000 + 2 * LEASE_MS, order=1)
    except WorkerIdInUseError as held:
        pytest.fail(f"claim still held by {held.holder} until {held.expires_ms} ms")


def test_a_heartbeat_sent_after_the_clock_came_back_tells_status_what_it_cannot_reach(
    client: Any,
) -> None:
    """The ``unreachable`` field ``status`` reads is the last heartbeat's sent, also when its
    expiry is lower than the one before (a clock stepped back; a reload that shortened
    the lease): were such a heartbeat refused, status would go on naming what the process
    could reach at the step (or naming nothing) for as long as the step was."""
    holder = store(client)
    beat = functools.partial(holder.heartbeat, "w-told", instance="i1", margin_ms=2_500)
    beat(STEP_MS + LEASE_MS, {}, now_ms=STEP_MS, order=1)  # the clock an hour ahead
    beat(4_000 + LEASE_MS, {"us-east-1": (4.0, "timed out")}, now_ms=4_000, order=2)
    assert holder.unreachable_from(4_000)["w-told"] == {"us-east-1": (4.0, "timed out")}
