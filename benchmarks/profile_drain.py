"""``make profile``: where the runner's CPU goes while it drains a backlog.

The runner runs as its own process, as in production, under yappi's CPU clock
(``benchmarks.cpu_profiled``): each thread is timed by its own CPU time, so threads waiting
on sockets or locks cost nothing and the profile shows what burns the process's CPU (py-spy's
wall-clock samples showed mostly threads blocked in ``recv``). Profiling starts once the
metrics endpoint answers (after preflight) and stops when the backlog is drained. The output,
``benchmarks/results/profile.txt``: the functions with the most CPU by themselves and with
their callees, and the CPU per target write of the runner (under the profiler, which about
doubles it) and of DynamoDB Local, from /proc.
"""

from __future__ import annotations

import logging
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_runner import fill_backlog
from benchmarks.common import (
    REGIONS,
    RESULTS,
    RunnerProcess,
    cpu_seconds,
    fresh_server,
    write_config,
)

BACKLOG = int(os.environ.get("BENCH_PROFILE_BACKLOG", "5000"))


def summarize(path: Path, top: int = 30) -> str:
    """yappi's saved statistics -> the busiest functions, self and inclusive CPU."""
    stats = pstats.Stats(str(path))
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in rows.values()) or 1.0

    def name(func: tuple[str, int, str]) -> str:
        file, line, function = func
        parts = Path(file).parts
        return f"{function} ({'/'.join(parts[-2:])}:{line})"

    def table(column: int) -> list[str]:
        ranked = sorted(rows.items(), key=lambda kv: kv[1][column], reverse=True)[:top]
        return [
            f"{100 * row[column] / total:5.1f}%  {row[1]:>8} calls  {name(func)}"
            for func, row in ranked
        ]

    lines = [f"{total:.1f} CPU seconds in the runner's profiled functions", "", "self:"]
    lines += [*table(2), "", "inclusive (a thread's share counts once per frame):"]
    return "\n".join(lines + table(3))


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    RESULTS.mkdir(exist_ok=True)
    stats_path = Path(tempfile.mkdtemp()) / "runner.pstats"
    target_writes = BACKLOG * (len(REGIONS) - 1)
    load = os.getloadavg()[0]
    with fresh_server() as server:
        fill_backlog(server.endpoint_url, "Profiled", BACKLOG)
        config = write_config(
            Path(tempfile.mkdtemp()) / "p.toml",
            dict.fromkeys(REGIONS, server.endpoint_url),
            "Profiled",
        )
        prefix = [sys.executable, "-m", "benchmarks.cpu_profiled", str(stats_path)]
        runner = RunnerProcess(config, prefix)
        try:
            runner.wait_until_serving()  # past startup and preflight
            runner.process.send_signal(signal.SIGUSR1)  # drop startup from the profile
            before = (cpu_seconds(runner.process.pid), cpu_seconds(server.pid))
            began = time.perf_counter()
            done = 0.0
            while done < target_writes and time.perf_counter() - began < 600:
                time.sleep(0.25)
                done = runner.replicated(REGIONS[0])
            elapsed = time.perf_counter() - began
            after = (cpu_seconds(runner.process.pid), cpu_seconds(server.pid))
        finally:
            runner.stop()
    header = (
        f"drain of {BACKLOG} inserts into {len(REGIONS) - 1} targets under yappi (CPU clock),"
        f" {elapsed:.1f} s: {done:.0f} target writes ({done / elapsed:.0f}/s), load average"
        f" {load:.1f} at the start\n"
        f"CPU per target write: runner {1000 * (after[0] - before[0]) / max(done, 1):.2f} ms"
        f" (profiled), DynamoDB Local {1000 * (after[1] - before[1]) / max(done, 1):.2f} ms\n\n"
    )
    text = header + summarize(stats_path) + "\n"
    (RESULTS / "profile.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
