"""Checkpoints on DynamoDB Local: saved only by the lease holder, only forward, END final.

The conditions are evaluated by the server, so they are tested against a real one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import END, LeaseLostError, ShardRef
from dynamodb_replicator.testing.local import DynamoDBLocal

REGION = "eu-west-1"
TABLE = "fencing-state"
SHARD = ShardRef("Orders", "arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/L", "shard-1")
LEASE_MS = 10_000


def seq(n: int, digits: int = 21) -> str:
    return str(n).zfill(digits)


@pytest.fixture(scope="module")
def client(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    client = make_client("dynamodb", RegionSpec(REGION, ddb_local.endpoint_url))
    ensure_state_table(client, TABLE, REGION)
    yield client


@pytest.fixture
def shard(client: Any, request: pytest.FixtureRequest) -> ShardRef:
    return ShardRef(SHARD.table, SHARD.stream_arn, request.node.name)


def store(client: Any) -> DynamoStateStore:
    return DynamoStateStore(client, TABLE, REGION)


def test_a_worker_that_lost_its_lease_cannot_save(client: Any, shard: ShardRef) -> None:
    first, second = store(client), store(client)
    assert first.acquire(shard, "first", 0, LEASE_MS)
    first.save(shard, {"us": seq(5)})
    assert not second.acquire(shard, "second", 1_000, LEASE_MS)  # held: not taken
    with pytest.raises(LeaseLostError):
        second.save(shard, {"us": seq(9)})
    assert second.acquire(shard, "second", 20_000, LEASE_MS)  # expired: taken over
    with pytest.raises(LeaseLostError):
        first.save(shard, {"us": seq(9)})  # the zombie is refused
    assert not first.renew(shard, "first", 21_000, LEASE_MS, order=1)
    second.save(shard, {"us": seq(7)})
    assert second.load(shard) == {"us": seq(7)}


def test_a_restarted_worker_fences_its_predecessor_of_the_same_id(
    client: Any, shard: ShardRef
) -> None:
    old, new = store(client), store(client)
    assert old.acquire(shard, "w1", 0, LEASE_MS)
    # The same id in a new process does not hold the old one's token: it waits for the
    # expiry like any other worker, since the old process may still be writing until then.
    assert not new.acquire(shard, "w1", 1_000, LEASE_MS)
    assert old.renew(shard, "w1", 2_000, LEASE_MS, order=1)  # the old process keeps its lease
    assert not new.acquire(shard, "w1", LEASE_MS + 1_000, LEASE_MS)  # renewed: still live
    assert old.acquire(shard, "w1", 3_000, LEASE_MS)  # the holder itself: its token
    assert new.acquire(shard, "w1", 3_000 + LEASE_MS + 1, LEASE_MS)  # expired: a new token
    with pytest.raises(LeaseLostError):
        old.save(shard, {"us": seq(3)})
    new.save(shard, {"us": seq(4)})
    assert new.load(shard) == {"us": seq(4)}


def test_checkpoints_never_move_backwards_and_end_is_final(client: Any, shard: ShardRef) -> None:
    holder = store(client)
    assert holder.acquire(shard, "w", 0, LEASE_MS)
    holder.save(shard, {"us": seq(100), "ap": seq(50)})
    # 21 and 40 digits: the order is the numbers', not the text's.
    holder.save(shard, {"us": seq(99, 40), "ap": seq(60, 40)})
    assert holder.load(shard) == {"us": seq(100), "ap": seq(60, 40)}
    holder.save(shard, {"us": END})
    holder.save(shard, {"us": seq(200), "ap": END})
    assert holder.load(shard) == {"us": END, "ap": END}


def test_add_region_seeds_only_absent_positions_and_earlier_checkpoints_are_read(
    client: Any, shard: ShardRef
) -> None:
    legacy = f"cp|{shard.table}|{shard.stream_label}|{shard.shard_id}"
    client.put_item(
        TableName=TABLE, Item={"pk": {"S": legacy}, "pos#us": {"S": seq(8)}, "pos#eu": {"S": END}}
    )
    seeder = store(client)
    seeder.seed(shard, {"ap": seq(8)})
    seeder.seed(shard, {"ap": seq(2)})  # a position exists: kept
    assert legacy.removeprefix("cp|") not in seeder.leases()  # seeded positions are no lease
    holder = store(client)
    assert holder.acquire(shard, "w", 0, LEASE_MS)  # a seeded item has no owner yet
    holder.save(shard, {"us": seq(9)})
    assert holder.load(shard) == {"us": seq(9), "eu": END, "ap": seq(8)}
