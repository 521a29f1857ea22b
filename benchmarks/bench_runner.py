"""Runner benchmark: drain rate of a 20,000-change backlog (and a naive replicator's), lag
at 100 writes/s, the runner's peak memory.

    make bench            (or: .venv/bin/python -m benchmarks.bench_runner)

Every figure is measured in one run on one fresh DynamoDB Local, and the drain rate is
reported as a ratio to the raw conditional-PutItem ceiling of the same server and client.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CEILING_THREADS,
    REGIONS,
    RunnerProcess,
    client,
    conditional_put,
    conditional_put_ceiling,
    create_table,
    fresh_server,
    item,
    report,
    timed_parallel,
    write_config,
)
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.cli.run import tune_interpreter
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.plan import PutVersion, WriteOp
from dynamodb_replicator.core.ports import Deadline, Prefetched, TargetResult, TargetWriter
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.replaceable import Replaceable
from dynamodb_replicator.runner.runner import Runner

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "20000"))
SMALL_BACKLOG = BACKLOG // 4  # a second drain: peak memory must not grow with the backlog
NAIVE_BACKLOG = int(os.environ.get("BENCH_NAIVE_BACKLOG", "2000"))  # its rate is steady
LAG_RATE = 100  # writes per second
LIGHT_RATE = 10  # a light load: shows the polling latency alone
LAG_SECONDS = 20
KEYS = 500  # the lag test's keyspace: each key is updated every few seconds
LAG_WAIT_SECONDS = 300  # after the writes, for every lag sample to arrive
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))  # each ratio rests on this many pairs
CEILING_RUNS = len(CEILING_THREADS)  # runs per ceiling measurement (best of them)


def region_endpoints(endpoint: str, targets_via: str | None = None) -> dict[str, str]:
    """Every region on ``endpoint``; the targets (all but the first) through ``targets_via``
    (a delaying proxy in front of the same server) when given: the runner beside the source."""
    return {r: (targets_via or endpoint) if r != REGIONS[0] else endpoint for r in REGIONS}


def start_runner(
    endpoint: str, table: str, targets_via: str | None = None
) -> tuple[Runner, threading.Event, threading.Thread]:
    endpoints = region_endpoints(endpoint, targets_via)
    specs = tuple(RegionSpec(r, url) for r, url in endpoints.items())
    runner = Runner(RunnerConfig(tables=(table,), regions=specs), worker_id=f"bench-{table}")
    runner.start()
    tune_interpreter()  # as ``run`` does once the runner started
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    return runner, stop, thread


def fill_backlog(endpoint: str, table: str, count: int) -> float:
    """``count`` inserts in the first region, before any replicator runs; writes per second."""
    for region in REGIONS:
        create_table(endpoint, region, table)
    source = client(endpoint, REGIONS[0])

    def put(n: int) -> None:
        source.put_item(TableName=table, Item=item(f"k{n}", 1_000 + n))

    return timed_parallel(count, 16, put)


def drain(
    endpoint: str,
    backlog: int,
    table: str = "Drain",
    *,
    targets_via: str | None = None,
    max_workers: int | None = None,
) -> dict[str, Any]:
    """The runner (its own process) replicates a backlog of ``backlog`` inserts into two
    regions (through ``targets_via`` if given), ``max_workers`` writes in flight per target
    (default: the configuration's default); its metrics endpoint says how far it is."""
    write_rate = fill_backlog(endpoint, table, backlog)
    extra = {} if max_workers is None else {"max_workers": max_workers}
    config = write_config(
        Path(tempfile.mkdtemp()) / "drain.toml",
        region_endpoints(endpoint, targets_via),
        table,
        extra,
    )
    runner = RunnerProcess(config)
    target_writes = backlog * (len(REGIONS) - 1)
    samples: list[tuple[float, float]] = []
    done = 0.0
    try:
        # The clock starts when the metrics endpoint answers: after startup and preflight,
        # which a short drain would otherwise count as replication time.
        began = runner.wait_until_serving()
        cpu = runner.cpu_seconds()
        while done < target_writes:
            time.sleep(0.25)
            done = runner.replicated(REGIONS[0])
            samples.append((round(time.perf_counter() - began, 2), done))
            if time.perf_counter() - began > 900:
                raise RuntimeError(f"drain did not finish: {samples[-1]}")
        seconds = time.perf_counter() - began
        peak, cpu = runner.peak_rss_mb(), runner.cpu_seconds() - cpu
    finally:
        runner.stop()
    return {
        "backlog_write_per_s": write_rate,
        "drain_seconds": seconds,
        "drain_target_writes_per_s": target_writes / seconds,
        "drain_samples": samples,
        "peak_rss_mb": peak,
        "runner_cpu_ms_per_target_write": 1000 * cpu / target_writes,
        "runner_cpu_share": cpu / seconds,  # of one core
    }


def naive_drain(endpoint: str, backlog: int, table: str = "Naive") -> dict[str, Any]:
    """What earlier Lambda replicators do: one record at a time, one target after the other,
    one conditional PutItem each (no tombstones, no parallelism). Runs in this process."""
    fill_backlog(endpoint, table, backlog)
    source = RegionSpec(REGIONS[0], endpoint)
    stream = StreamClient(
        REGIONS[0], make_client("dynamodb", source), make_client("dynamodbstreams", source)
    )
    targets = [client(endpoint, region) for region in REGIONS[1:]]
    arn = stream.stream_arn(table)
    began = time.perf_counter()
    writes = 0
    for shard in stream.shards(arn):
        iterator: str | None = stream.iterator(arn, shard.shard_id, None)
        while iterator:
            page = stream.read(iterator)
            for record in page.records:
                image = record["dynamodb"]["NewImage"]
                for target in targets:
                    conditional_put(target, table, image)
                    writes += 1
            iterator = page.next_iterator if page.records else None
    return {
        "naive_target_writes_per_s": writes / (time.perf_counter() - began),
        "naive_writes": writes,
    }


class VisibilityRecorder:
    """Wraps a target writer. A page's writes are visible in the target once the writer
    says they are written (``written``, before its settling reads); the lag of each write
    is that moment minus its ``__timestamp`` (epoch ms at the source write). ``settled``
    gets the same, measured when the page has settled too (when it can be checkpointed).
    No polling: measuring must not load the shared server."""

    def __init__(
        self, inner: TargetWriter, sink: list[float], settled: list[float] | None = None
    ) -> None:
        self.inner, self.sink, self.settled = inner, sink, settled

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        return self.inner.prefetch(table, ops, deadline=deadline)

    @property
    def region(self) -> str:
        return self.inner.region

    def close(self) -> None:
        self.inner.close()

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        stamps = [float(op.version.timestamp) for op in ops if isinstance(op, PutVersion)]
        seen = [False]

        def visible() -> None:
            if not seen[0]:
                seen[0] = True
                now_ms = time.time() * 1000
                self.sink.extend(now_ms - stamp for stamp in stamps)
            if written is not None:
                written()

        result = self.inner.apply(
            table, ops, deadline=deadline, written=visible, prefetched=prefetched
        )
        visible()  # a writer that did not say so: its writes are done by now
        if self.settled is not None:
            now_ms = time.time() * 1000
            self.settled.extend(now_ms - stamp for stamp in stamps)
        return result


def lag(
    endpoint: str, rate: int, table: str, *, updates: bool = True, targets_via: str | None = None
) -> dict[str, Any]:
    """Lag at ``rate`` writes/s: updates of KEYS existing items (the steady state of most
    tables: one conditional PutItem per target), or inserts of new keys (a conditional
    PutItem between two batched tombstone reads). The runner runs in this process and
    reaches the targets through ``targets_via`` if given."""
    for region in REGIONS:
        create_table(endpoint, region, table)
    runner, stop, thread = start_runner(endpoint, table, targets_via)
    latencies: list[float] = []
    settled: list[float] = []
    replaceable = runner.regions[REGIONS[0]].replicator
    assert isinstance(replaceable, Replaceable)  # the runner's: a reload may replace it
    replicator = replaceable.current
    assert isinstance(replicator, Replicator)
    for target in REGIONS[1:]:
        replicator.writers[target] = VisibilityRecorder(
            replicator.writers[target], latencies, settled
        )
    source = client(endpoint, REGIONS[0])
    # Create the keys and warm the code paths up; these samples are discarded.
    for n in range(KEYS):
        source.put_item(TableName=table, Item=item(f"key-{n}", int(time.time() * 1000)))
    while len(latencies) < KEYS * (len(REGIONS) - 1):
        time.sleep(0.1)
    latencies.clear()
    settled.clear()
    total = rate * LAG_SECONDS
    began = time.perf_counter()

    def write(n: int) -> None:
        # Writes are issued on schedule (100/s) by a few threads, whatever one call takes.
        pause = n / rate - (time.perf_counter() - began)
        if pause > 0:
            time.sleep(pause)
        key = f"key-{n % KEYS}" if updates else f"new-{n}"
        source.put_item(TableName=table, Item=item(key, int(time.time() * 1000)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(total)))
    achieved = total / (time.perf_counter() - began)
    # Wait for every sample: percentiles of what arrived in time would drop the slowest
    # writes silently. A bound only for a runner that stalls; then the gap is reported.
    expected = total * (len(REGIONS) - 1)
    deadline = time.perf_counter() + LAG_WAIT_SECONDS
    while len(latencies) < expected and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join()
    ordered = sorted(latencies)
    cuts = statistics.quantiles(ordered, n=100)
    settled_cuts = statistics.quantiles(sorted(settled), n=100)
    return {
        "lag_p50_ms": cuts[49],
        "lag_p99_ms": cuts[98],
        "settled_lag_p50_ms": settled_cuts[49],
        "settled_lag_p99_ms": settled_cuts[98],
        "lag_max_ms": ordered[-1],
        "lag_samples": len(ordered),
        "lag_samples_missing": max(0, expected - len(ordered)),
        "settled_lag_samples": len(settled),
        "lag_write_rate": achieved,
        "lag_writes": total,
        "lag_latencies": ordered,
    }


def drain_pair(backlog: int) -> dict[str, Any]:
    """One drain of ``backlog`` and the conditional-PutItem ceiling of the same fresh server,
    measured just before it (no stream on the ceiling's table: stream records pile up in
    DynamoDB Local and slow down what follows)."""
    with fresh_server() as server:
        endpoint = server.endpoint_url
        create_table(endpoint, REGIONS[0], "Ceiling", stream=False)
        ensure_tombstone_table(client(endpoint, REGIONS[0]), "Ceiling", region=REGIONS[0])
        ceiling, threads = conditional_put_ceiling(endpoint, "Ceiling")
        drained = drain(endpoint, backlog)
    return {**drained, "ceiling": ceiling, "ceiling_threads": threads}


def naive_pair(backlog: int) -> dict[str, Any]:
    """The naive drain and the ceiling, both on one fresh server (ceiling first)."""
    with fresh_server() as server:
        endpoint = server.endpoint_url
        create_table(endpoint, REGIONS[0], "Ceiling", stream=False)
        ceiling, _ = conditional_put_ceiling(endpoint, "Ceiling")
        naive = naive_drain(endpoint, backlog)
    return {**naive, "ceiling": ceiling}


def ratios(values: Sequence[float]) -> dict[str, float]:
    """Median of ``values`` and its spread."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def measure() -> dict[str, Any]:
    """Every runner figure, each on a fresh server where it matters; each ratio over PAIRS
    (ceiling, drain) pairs, each pair on a server of its own, with its spread."""
    drains = [drain_pair(BACKLOG) for _ in range(PAIRS)]
    drain_ratios = ratios([d["drain_target_writes_per_s"] / d["ceiling"] for d in drains])
    # DynamoDB Local slows down as stream records pile up: each run gets a server of its own.
    with fresh_server() as server:
        small = drain(server.endpoint_url, SMALL_BACKLOG)
    naives = [naive_pair(NAIVE_BACKLOG) for _ in range(PAIRS)]
    naive_ratios = ratios([n["naive_target_writes_per_s"] / n["ceiling"] for n in naives])
    with fresh_server() as server:
        lagged = lag(server.endpoint_url, LAG_RATE, "Lag")
    with fresh_server() as server:
        inserts = lag(server.endpoint_url, LAG_RATE, "InsertLag", updates=False)
    with fresh_server() as server:
        light = lag(server.endpoint_url, LIGHT_RATE, "LightLag", updates=False)
    first = drains[0]  # the plot's samples and the memory figure
    ceiling = statistics.median(d["ceiling"] for d in drains)
    result: dict[str, Any] = {
        "ceiling_cond_put_per_s": round(ceiling, 1),
        "ceiling_threads": first["ceiling_threads"],
        "drain_target_writes_per_s": round(
            statistics.median(d["drain_target_writes_per_s"] for d in drains), 1
        ),
        "drain_ratio": drain_ratios["median"],
        "drain_ratio_min": drain_ratios["min"],
        "drain_ratio_max": drain_ratios["max"],
        "naive_target_writes_per_s": round(
            statistics.median(n["naive_target_writes_per_s"] for n in naives), 1
        ),
        "naive_drain_ratio": naive_ratios["median"],
        "naive_drain_ratio_min": naive_ratios["min"],
        "naive_drain_ratio_max": naive_ratios["max"],
        "lag_p50_ms": round(lagged["lag_p50_ms"], 1),
        "lag_p99_ms": round(lagged["lag_p99_ms"], 1),
        "lag_samples": lagged["lag_samples"],
        "lag_samples_missing": lagged["lag_samples_missing"],
        "lag_write_rate": round(lagged["lag_write_rate"], 1),
        "lag_insert_p50_ms": round(inserts["lag_p50_ms"], 1),
        "lag_insert_p99_ms": round(inserts["lag_p99_ms"], 1),
        "lag_insert_samples_missing": inserts["lag_samples_missing"],
        f"lag_insert_p50_ms_at_{LIGHT_RATE}_per_s": round(light["lag_p50_ms"], 1),
        f"lag_insert_p99_ms_at_{LIGHT_RATE}_per_s": round(light["lag_p99_ms"], 1),
        f"lag_insert_samples_missing_at_{LIGHT_RATE}_per_s": light["lag_samples_missing"],
        "peak_rss_mb": round(first["peak_rss_mb"], 1),
        f"peak_rss_mb_backlog_{SMALL_BACKLOG}": round(small["peak_rss_mb"], 1),
        # Memory must not grow with the backlog: the done-when asks for within 10%.
        f"peak_rss_growth_{SMALL_BACKLOG}_to_{BACKLOG}": round(
            first["peak_rss_mb"] / small["peak_rss_mb"] - 1, 3
        ),
        "_drain_samples": first["drain_samples"],
        "_lag_latencies": lagged["lag_latencies"],
    }
    ceilings = PAIRS * CEILING_RUNS
    result["_samples"] = {
        "ceiling_cond_put_per_s": ceilings,
        "ceiling_threads": ceilings,
        "drain_target_writes_per_s": PAIRS,
        "drain_ratio": PAIRS,
        "drain_ratio_min": PAIRS,
        "drain_ratio_max": PAIRS,
        "naive_target_writes_per_s": PAIRS,
        "naive_drain_ratio": PAIRS,
        "naive_drain_ratio_min": PAIRS,
        "naive_drain_ratio_max": PAIRS,
        "lag_p50_ms": lagged["lag_samples"],
        "lag_p99_ms": lagged["lag_samples"],
        "lag_samples": lagged["lag_samples"],
        "lag_samples_missing": lagged["lag_samples"],
        "lag_write_rate": lagged["lag_writes"],
        "lag_insert_p50_ms": inserts["lag_samples"],
        "lag_insert_p99_ms": inserts["lag_samples"],
        "lag_insert_samples_missing": inserts["lag_samples"],
        f"lag_insert_p50_ms_at_{LIGHT_RATE}_per_s": light["lag_samples"],
        f"lag_insert_p99_ms_at_{LIGHT_RATE}_per_s": light["lag_samples"],
        f"lag_insert_samples_missing_at_{LIGHT_RATE}_per_s": light["lag_samples"],
        "peak_rss_mb": 1,  # one process's high-water mark
        f"peak_rss_mb_backlog_{SMALL_BACKLOG}": 1,
        f"peak_rss_growth_{SMALL_BACKLOG}_to_{BACKLOG}": 2,
    }
    return result


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    result = measure()
    report(result, "runner.json")


if __name__ == "__main__":
    main()
