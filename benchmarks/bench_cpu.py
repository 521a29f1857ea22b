"""The runner's CPU per replicated target write, beside the floors of the clients.

    .venv/bin/python -m benchmarks.bench_cpu

* ``runner_cpu_ms_per_target_write``: ``dynamodb-replicator run`` (its own process) drains a
  backlog of CPU_BACKLOG inserts into two targets (at least 10,000 target writes); its
  utime+stime from the moment its metrics endpoint answers until the last target write,
  divided by the target writes.
* ``client_floor_ms_per_call``: one conditional PutItem through the client the runner
  writes with (the lean transport, ``aws.lean``), from as many threads as the runner has
  writes in flight per target: this process's CPU per call.
* ``boto3_floor_ms_per_call``: the same call through a plain boto3 client, same threads.

The floors run in alternating pairs (lean, boto3, lean, boto3, ...) on a table without a
stream, and the medians are reported: the machine is shared, and its load drifts.
DynamoDB Local runs on the same two cores; its CPU is not counted in any figure.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError, ConnectionClosedError

from benchmarks.bench_runner import drain
from benchmarks.common import (
    REGIONS,
    client,
    conditional_put,
    create_table,
    fresh_server,
    item,
    report,
)
from dynamodb_replicator.aws.lean import LeanClient, make_lean_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.settings import ReplicationSettings

__all__ = ["measure"]

CPU_BACKLOG = int(os.environ.get("BENCH_CPU_BACKLOG", "5000"))  # x2 targets: 10,000 writes
FLOOR_CALLS = int(os.environ.get("BENCH_FLOOR_CALLS", "2000"))  # per sample
FLOOR_PAIRS = 3


def _cpu_per_call(put: Callable[[int], None], threads: int, start: int) -> float:
    """CPU ms of this process per call of ``put`` over FLOOR_CALLS calls on ``threads``."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, range(start, start + 50)))  # connections open, code warm
        began = time.process_time()
        list(pool.map(put, range(start + 50, start + 50 + FLOOR_CALLS)))
        return 1000 * (time.process_time() - began) / FLOOR_CALLS


def floors(endpoint: str, threads: int) -> dict[str, Any]:
    """Median CPU per conditional PutItem: the lean client's and boto3's, in pairs."""
    table = "Floor"
    create_table(endpoint, REGIONS[0], table, stream=False)
    spec = RegionSpec(REGIONS[0], endpoint)
    lean = make_lean_client("dynamodb", spec, pool=threads + 4)
    assert isinstance(lean, LeanClient)
    boto = client(endpoint, REGIONS[0], pool=threads + 4)

    lost: list[int] = []  # calls sent again after DynamoDB Local dropped or failed them

    def putter(target: Any) -> Callable[[int], None]:
        def put(n: int) -> None:
            for attempt in range(3):
                try:
                    conditional_put(target, table, item(f"floor-{n % 1000}", n))
                    return
                except (ConnectionClosedError, ClientError) as exc:
                    # The server under load closes a connection, or times out on a lock
                    # (InternalServerError), now and then: the call goes again (its CPU is
                    # counted, the retry too), as the runner would.
                    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                    if attempt == 2 or code not in (None, "InternalServerError"):
                        raise
                    lost.append(n)

        return put

    samples: dict[str, list[float]] = {"lean": [], "boto3": []}
    start = 0
    for _ in range(FLOOR_PAIRS):
        for name, target in (("lean", lean), ("boto3", boto)):
            samples[name].append(_cpu_per_call(putter(target), threads, start))
            start += FLOOR_CALLS + 50
    return {
        "client_floor_ms_per_call": round(statistics.median(samples["lean"]), 3),
        "boto3_floor_ms_per_call": round(statistics.median(samples["boto3"]), 3),
        "floor_threads": threads,
        "floor_calls_per_sample": FLOOR_CALLS,
        "floor_samples": FLOOR_PAIRS,
        "floor_samples_lean_ms": [round(x, 3) for x in samples["lean"]],
        "floor_samples_boto3_ms": [round(x, 3) for x in samples["boto3"]],
        "floor_calls_sent_again": len(lost),
    }


def measure() -> dict[str, Any]:
    """The drain's CPU per target write and the two floors, on one fresh server each; the
    1-minute load average beside each (the machine is shared: CPU seconds stretch under
    load, as every switch between processes refills the caches)."""
    threads = ReplicationSettings().max_workers
    load_drain = os.getloadavg()[0]
    with fresh_server() as server:
        drained = drain(server.endpoint_url, CPU_BACKLOG, "CpuDrain")
    load_floors = os.getloadavg()[0]
    with fresh_server() as server:
        floor = floors(server.endpoint_url, threads)
    target_writes = CPU_BACKLOG * (len(REGIONS) - 1)
    return {
        "runner_cpu_ms_per_target_write": round(drained["runner_cpu_ms_per_target_write"], 3),
        "runner_cpu_target_writes": target_writes,
        "runner_cpu_drain_target_writes_per_s": round(drained["drain_target_writes_per_s"], 1),
        "runner_cpu_share": round(drained["runner_cpu_share"], 2),
        "runner_cpu_load_average": round(load_drain, 1),
        "floor_load_average": round(load_floors, 1),
        **floor,
        "_samples": {
            **dict.fromkeys(
                ("runner_cpu_ms_per_target_write", "runner_cpu_drain_target_writes_per_s"),
                f"1 drain of {target_writes} target writes",
            ),
            "runner_cpu_share": f"1 drain of {target_writes} target writes",
            **dict.fromkeys(
                ("client_floor_ms_per_call", "boto3_floor_ms_per_call"),
                f"median of {FLOOR_PAIRS} x {FLOOR_CALLS} calls",
            ),
            **dict.fromkeys(
                ("floor_samples_lean_ms", "floor_samples_boto3_ms"),
                f"{FLOOR_PAIRS} x {FLOOR_CALLS} calls",
            ),
            "floor_calls_sent_again": f"{2 * FLOOR_PAIRS * FLOOR_CALLS} calls",
        },
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    report(measure(), "cpu.json")


if __name__ == "__main__":
    main()
