"""``make bench``: every benchmark on fresh DynamoDB Local servers; a table, plots in
``benchmarks/results/``, and one JSON object as the last line.

Each figure is a ratio against a baseline measured in the same run on the same server,
over several alternating pairs with its spread (``_min``/``_max``): these machines are
shared and noisy. ``samples`` says how many measurements each figure rests on.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_backfill,
    bench_cpu,
    bench_hot_shard,
    bench_rtt,
    bench_runner,
    bench_units,
)
from benchmarks.common import RESULTS, report
from benchmarks.plots import plot_drain, plot_lag, plot_rtt
from dynamodb_replicator.core.settings import ReplicationSettings


def machine(load_at_start: tuple[float, float, float]) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    start, end = (", ".join(f"{x:.1f}" for x in load) for load in (load_at_start, os.getloadavg()))
    return (
        f"{os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}, "
        f"load {start} at the start, {end} at the end"
    )


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    RESULTS.mkdir(exist_ok=True)
    load, began = os.getloadavg(), time.perf_counter()
    units = bench_units.measure()
    runner = bench_runner.measure()
    rtt = bench_rtt.measure()
    backfill = bench_backfill.measure()
    cpu, hot = bench_cpu.measure(), bench_hot_shard.measure()
    latencies, samples = runner.pop("_lag_latencies"), runner.pop("_drain_samples")
    drains = rtt.pop("_drains")
    raw = {"lag_latencies_ms": latencies, "drain_samples": samples, "rtt_drains": drains}
    plot_rtt(drains, ReplicationSettings().max_workers, RESULTS / "rtt.png")
    (RESULTS / "bench_raw.json").write_text(json.dumps(raw) + "\n")
    plot_lag(latencies, bench_runner.LAG_RATE, RESULTS / "lag.png")
    plot_drain(
        samples,
        runner["ceiling_cond_put_per_s"],
        runner["naive_target_writes_per_s"],
        RESULTS / "drain.png",
    )
    result: dict[str, Any] = {"machine": machine(load)}
    counts: dict[str, int] = {}  # figure -> the measurements it rests on (see report)
    for part in (units, runner, rtt, backfill, cpu, hot):
        counts.update(part.pop("_samples", {}))
        result.update(part)
    result["bench_minutes"] = round((time.perf_counter() - began) / 60, 1)
    report({**result, "_samples": counts}, "bench.json")


if __name__ == "__main__":
    main()
