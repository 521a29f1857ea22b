"""The in-memory state table (testing/memory_leases.py), which every control-plane
simulation runs on, answers as aws/state.py does on DynamoDB Local: random sequences of
acquires (inherited too), renewals, releases, checkpoint saves, claim heartbeats
(replacing a holder too) and claims given back (``forget_worker``) by three processes,
two of them under one worker id, with requests sent earlier landing late (a renewal,
heartbeat, acquire or release carrying the token, time and order it was sent with).
After every call the two give the same answer, hold the same leases (owner, expiry,
token, checkpoint, renewal order) and claims (instance, expiry, margin, heartbeat order),
and count the same live workers. ``AGREE_RUNS`` sets how many sequences
(default 20)."""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, WorkerIdInUseError, ensure_state_table
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import LeaseLostError, ShardRef
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.local import DynamoDBLocal
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

REGION = "eu-west-1"
STREAM = "arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/L"
SHARDS = tuple(ShardRef("Orders", STREAM, f"s{n}") for n in range(2))
RUNS = int(os.environ.get("AGREE_RUNS", "20"))
STEPS = 60


@pytest.fixture(scope="module")
def client(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    yield make_client("dynamodb", RegionSpec(REGION, ddb_local.endpoint_url))


@dataclass
class Pair:
    """One process's store on each table (or a request sent earlier: its held tokens, and
    its ``order`` in the process's count of the requests it sent)."""

    worker: str
    instance: str
    ddb: DynamoStateStore
    mem: MemoryStateStore
    sent_ms: int = 0
    orders: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    order: int = 0

    def next_order(self) -> int:
        """This request's order: the one it was sent with, else the process's next."""
        return self.order or next(self.orders)


def answer(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except WorkerIdInUseError as held:
        return ("in use", held.holder, held.expires_ms, held.margin_ms)
    except LeaseLostError:
        return ("lost",)


def stored(ddb: DynamoStateStore, table: LeaseTable) -> tuple[Any, Any]:
    """(DynamoDB Local's, the memory table's): leases and claims, as comparable tuples."""
    leases = {
        item["pk"]["S"].rsplit("|", 1)[1]: (
            item["owner"]["S"],
            int(item["expires"]["N"]),
            int(item["token"]["N"]),
            int(item["pos#t"]["S"]) if "pos#t" in item else None,
            int(item.get("order", {}).get("N", 0)),
        )
        for item in ddb.scan("lease|")
    }
    claims = {
        item["pk"]["S"].split("|", 1)[1]: (
            item["instance"]["S"],
            int(item["expires"]["N"]),
            int(item.get("margin", {}).get("N", 0)),
            int(item["order"]["N"]),
        )
        for item in ddb.scan("worker|")
    }
    memory_leases = {
        shard.shard_id: (
            lease.owner,
            lease.expires_ms,
            lease.token,
            int(lease.positions["t"]) if "t" in lease.positions else None,
            lease.order,
        )
        for shard, lease in table.leases.items()
    }
    memory_claims = {
        worker: (instance, until, table.margins.get(worker, 0), table.orders[worker])
        for worker, (instance, until) in table.workers.items()
    }
    return (leases, claims), (memory_leases, memory_claims)


def sent(client: Any, name: str, table: LeaseTable, pair: Pair, now_ms: int) -> Pair:
    """A copy of ``pair`` holding its tokens of now and an order taken now: a request
    sent now, landing later."""
    mem = MemoryStateStore(table)
    mem.held.update(pair.mem.held)
    ddb = DynamoStateStore(client, name, REGION, held=dict(pair.ddb._held))
    order = pair.order or next(pair.orders)
    return Pair(pair.worker, pair.instance, ddb, mem, now_ms, pair.orders, order)


def step(
    rng: random.Random, pair: Pair, shard: ShardRef, t: int, seq: int, seen: Counter[str]
) -> tuple[Any, Any]:
    """One random call on both tables: (DynamoDB Local's answer, the memory table's);
    ``seen`` counts the claim cases the conditions tell apart."""
    ddb, mem, worker = pair.ddb, pair.mem, pair.worker
    op = rng.choice(("acquire", "renew", "renew", "release", "save", "heartbeat", "forget"))
    if op == "acquire":
        inherit = rng.random() < 0.2
        return (
            answer(lambda: ddb.acquire(shard, worker, t, 10_000, inherit=inherit)),
            answer(lambda: mem.acquire(shard, worker, t, 10_000, inherit=inherit)),
        )
    order = pair.next_order()
    claimed = mem.table.workers.get(worker)
    if claimed is not None and claimed[0] == pair.instance:
        late = order <= mem.table.orders[worker]
        if op == "heartbeat" and late:  # ours, refused by its order, whatever the expiry
            seen["late on our expired claim" if claimed[1] < t else "late on our claim"] += 1
        if op == "heartbeat" and claimed[1] == 0:
            seen["on our released claim"] += 1
    if op == "forget":
        return (
            answer(lambda: ddb.forget_worker(worker, instance=pair.instance, order=order)),
            answer(lambda: mem.forget_worker(worker, instance=pair.instance, order=order)),
        )
    if op == "renew":
        span = rng.choice((5_000, 10_000, 20_000))
        return (
            answer(lambda: ddb.renew(shard, worker, t, span, order=order)),
            answer(lambda: mem.renew(shard, worker, t, span, order=order)),
        )
    if op == "release":
        return answer(lambda: ddb.release(shard, worker)), answer(
            lambda: mem.release(shard, worker)
        )
    if op == "save":
        return (
            answer(lambda: ddb.save(shard, {"t": str(seq).zfill(21)})),
            answer(lambda: mem.save(shard, {"t": str(seq)})),
        )
    until, margin = t + rng.choice((10_000, 20_000)), rng.choice((2_500, 5_000))
    # A process replaces another one only (never its own instance).
    replacing = rng.choice(("", "", *(i for i in ("i0", "i1", "i2") if i != pair.instance)))
    beat: dict[str, Any] = {
        "instance": pair.instance,
        "now_ms": t,
        "margin_ms": margin,
        "replacing": replacing,
        "order": order,
    }
    return (
        answer(lambda: ddb.heartbeat(worker, until, **beat)),
        answer(lambda: mem.heartbeat(worker, until, **beat)),
    )


def test_the_memory_state_table_answers_and_stores_as_dynamodb_local_does(client: Any) -> None:
    late, seen = 0, Counter[str]()
    for run in range(RUNS):
        rng = random.Random(run)
        name = f"agree-{run}"
        ensure_state_table(client, name, REGION)
        table = LeaseTable(ManualClock())
        processes = [
            Pair(worker, f"i{n}", DynamoStateStore(client, name, REGION), MemoryStateStore(table))
            for n, worker in enumerate(("w1", "w1", "w2"))
        ]
        out: list[Pair] = []  # requests sent, to land later
        now, done = 10_000, []
        for n in range(STEPS):
            now += rng.choice((0, 500, 3_000, 11_000))
            shard = rng.choice(SHARDS)
            if out and rng.random() < 0.2:  # a request sent earlier lands now
                pair = rng.choice(out)
                t = pair.sent_ms
                pair = sent(client, name, table, pair, t)  # each landing on its own copy
                late += 1
            else:
                pair = rng.choice(processes)
                t = now - rng.choice((0, 0, 2_000, 6_000))
                if rng.random() < 0.15:
                    out.append(sent(client, name, table, pair, t))
            ours, memory = step(rng, pair, shard, t, n + 1, seen)
            done.append((pair.instance, shard.shard_id, t, ours))
            assert ours == memory, f"run {run} call {n}: {ours} != {memory} after {done}"
            on_ddb, in_memory = stored(pair.ddb, table)
            assert on_ddb == in_memory, f"run {run} call {n}: {on_ddb} != {in_memory} after {done}"
            live = (pair.ddb.live_workers(t), pair.mem.live_workers(t))
            assert live[0] == live[1], f"run {run} call {n}: live workers {live} after {done}"
    # The state the test is about: requests landed late, on both tables alike.
    assert late > RUNS
    # Our own claim met a heartbeat of ours sent before a later one, also once expired (the
    # clause that refuses it whatever the expiry), and one after we gave the claim back.
    assert seen["late on our expired claim"] and seen["on our released claim"], seen
