"""Runner benchmark: drain rate of a 20,000-change backlog and lag at 100 writes/s.

    make bench            (or: .venv/bin/python -m benchmarks.bench_runner)

Every figure is measured in one run on one fresh DynamoDB Local, and the drain rate is
reported as a ratio to the raw conditional-PutItem ceiling of the same server and client.
"""

from __future__ import annotations

import json
import logging
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REGIONS,
    client,
    conditional_put_ceiling,
    create_table,
    fresh_server,
    item,
    timed_parallel,
)
from dynamodb_replicator.aws.clients import RegionSpec
from dynamodb_replicator.config import RunnerConfig
from dynamodb_replicator.plan import PutVersion, WriteOp
from dynamodb_replicator.ports import TargetResult, TargetWriter
from dynamodb_replicator.runner import Runner

RESULTS = Path(__file__).parent / "results"
BACKLOG = 20_000
LAG_RATE = 100  # writes per second
LIGHT_RATE = 10  # a light load: shows the polling latency alone
LAG_SECONDS = 20
WARMUP = 200


def start_runner(endpoint: str, table: str) -> tuple[Runner, threading.Event, threading.Thread]:
    specs = tuple(RegionSpec(r, endpoint) for r in REGIONS)
    runner = Runner(RunnerConfig(tables=(table,), regions=specs), worker_id=f"bench-{table}")
    runner.start()
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    return runner, stop, thread


def applied_from(runner: Runner, source: str) -> int:
    return sum(
        p.applied + p.stale for p in runner.snapshot() if p.source == source and p.target != source
    )


def drain(endpoint: str) -> dict[str, Any]:
    for region in REGIONS:
        create_table(endpoint, region, "Drain")
    source = client(endpoint, REGIONS[0])

    def put(n: int) -> None:
        source.put_item(TableName="Drain", Item=item(f"k{n}", 1_000 + n))

    write_rate = timed_parallel(BACKLOG, 16, put)
    runner, stop, thread = start_runner(endpoint, "Drain")
    began = time.perf_counter()
    target_writes = BACKLOG * (len(REGIONS) - 1)
    samples = []
    while applied_from(runner, REGIONS[0]) < target_writes:
        time.sleep(0.5)
        samples.append((time.perf_counter() - began, applied_from(runner, REGIONS[0])))
        if time.perf_counter() - began > 600:
            raise RuntimeError(f"drain did not finish: {samples[-1]}")
    seconds = time.perf_counter() - began
    stop.set()
    thread.join()
    return {
        "backlog_write_per_s": write_rate,
        "drain_seconds": seconds,
        "drain_target_writes_per_s": target_writes / seconds,
        "drain_samples": samples,
    }


class VisibilityRecorder:
    """Wraps a target writer: when a page's writes return, they are visible in the target;
    the lag of each write is that moment minus its ``__timestamp`` (epoch ms at the source
    write). No polling: measuring must not load the shared server."""

    def __init__(self, inner: TargetWriter, sink: list[float]) -> None:
        self.inner, self.sink = inner, sink

    @property
    def region(self) -> str:
        return self.inner.region

    def close(self) -> None:
        self.inner.close()

    def apply(self, table: str, ops: Sequence[WriteOp]) -> TargetResult:
        result = self.inner.apply(table, ops)
        now_ms = time.time() * 1000
        self.sink.extend(
            now_ms - float(op.version.timestamp) for op in ops if isinstance(op, PutVersion)
        )
        return result


def lag(endpoint: str, rate: int, table: str) -> dict[str, Any]:
    for region in REGIONS:
        create_table(endpoint, region, table)
    runner, stop, thread = start_runner(endpoint, table)
    latencies: list[float] = []
    replicator = runner.regions[REGIONS[0]].replicator
    for target in REGIONS[1:]:
        replicator.writers[target] = VisibilityRecorder(replicator.writers[target], latencies)
    source = client(endpoint, REGIONS[0])
    # Warm the server's and the runner's code paths up; these samples are discarded.
    for n in range(WARMUP):
        source.put_item(TableName=table, Item=item(f"warm-{n}", int(time.time() * 1000)))
    while len(latencies) < WARMUP * (len(REGIONS) - 1):
        time.sleep(0.1)
    latencies.clear()
    total = rate * LAG_SECONDS
    began = time.perf_counter()

    def write(n: int) -> None:
        # Writes are issued on schedule (100/s) by a few threads, whatever one call takes.
        pause = n / rate - (time.perf_counter() - began)
        if pause > 0:
            time.sleep(pause)
        source.put_item(TableName=table, Item=item(f"lag-{n}", int(time.time() * 1000)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(total)))
    achieved = total / (time.perf_counter() - began)
    deadline = time.perf_counter() + 30
    while len(latencies) < total * (len(REGIONS) - 1) and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join()
    ordered = sorted(latencies)
    cuts = statistics.quantiles(ordered, n=100)
    return {
        "lag_p50_ms": cuts[49],
        "lag_p99_ms": cuts[98],
        "lag_max_ms": ordered[-1],
        "lag_samples": len(ordered),
        "lag_write_rate": achieved,
        "lag_latencies": ordered,
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with fresh_server() as server:
        endpoint = server.endpoint_url
        create_table(endpoint, REGIONS[0], "Ceiling", stream=False)
        ceiling, threads = conditional_put_ceiling(endpoint, "Ceiling")
        drained = drain(endpoint)
    # DynamoDB Local slows down as stream records pile up: lag gets a server of its own.
    with fresh_server() as server:
        lagged = lag(server.endpoint_url, LAG_RATE, "Lag")
    with fresh_server() as server:
        light = lag(server.endpoint_url, LIGHT_RATE, "LightLag")
    result = {
        "ceiling_cond_put_per_s": round(ceiling, 1),
        "ceiling_threads": threads,
        "drain_target_writes_per_s": round(drained["drain_target_writes_per_s"], 1),
        "drain_ratio": round(drained["drain_target_writes_per_s"] / ceiling, 3),
        "lag_p50_ms": round(lagged["lag_p50_ms"], 1),
        "lag_p99_ms": round(lagged["lag_p99_ms"], 1),
        "lag_samples": lagged["lag_samples"],
        "lag_write_rate": round(lagged["lag_write_rate"], 1),
        f"lag_p50_ms_at_{LIGHT_RATE}_per_s": round(light["lag_p50_ms"], 1),
        f"lag_p99_ms_at_{LIGHT_RATE}_per_s": round(light["lag_p99_ms"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runner.json").write_text(
        json.dumps({**result, "drain_samples": drained["drain_samples"]}, indent=2) + "\n"
    )
    print(f"{'metric':32} value")
    for key, value in result.items():
        print(f"{key:32} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
