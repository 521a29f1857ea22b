"""Shared pieces of the benchmarks: a fresh server, tables, a ceiling measurement."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from dynamodb_replicator.aws.clients import RegionSpec, make_client
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.local import DynamoDBLocal

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
PAYLOAD = "x" * 120  # ~170-byte items, as in DESIGN.md's measurements


@contextmanager
def fresh_server() -> Iterator[DynamoDBLocal]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with DynamoDBLocal() as server:
        yield server


def client(endpoint: str, region: str, pool: int = 64) -> Any:
    return make_client("dynamodb", RegionSpec(region, endpoint), pool=pool)


def create_table(endpoint: str, region: str, name: str, *, stream: bool = True) -> None:
    c = client(endpoint, region)
    kwargs: dict[str, Any] = {}
    if stream:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    c.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )
    if stream:
        ensure_tombstone_table(c, name, region=region)


def item(key: str, stamp: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "__timestamp": {"N": str(stamp)}, "payload": {"S": PAYLOAD}}


def timed_parallel(count: int, threads: int, work: Callable[[int], None]) -> float:
    """Run work(0..count-1) on ``threads`` threads; operations per second."""
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, range(count)))
    return count / (time.perf_counter() - began)


def conditional_put_ceiling(endpoint: str, table: str, count: int = 4000) -> tuple[float, int]:
    """Best raw conditional PutItem rate from this client, over a few thread counts."""
    c = client(endpoint, REGIONS[0], pool=80)
    best, best_threads = 0.0, 0
    lock = threading.Lock()
    for threads in (8, 16, 32, 64):
        prefix = f"ceiling-{threads}-"

        def put(n: int, prefix: str = prefix) -> None:
            c.put_item(
                TableName=table,
                Item=item(f"{prefix}{n}", n),
                ConditionExpression="attribute_not_exists(#ts) OR #ts < :t",
                ExpressionAttributeNames={"#ts": "__timestamp"},
                ExpressionAttributeValues={":t": {"N": str(n)}},
            )

        rate = timed_parallel(count, threads, put)
        with lock:
            if rate > best:
                best, best_threads = rate, threads
    return best, best_threads
