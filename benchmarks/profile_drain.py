"""``make profile``: where the runner's time goes while it drains a backlog.

py-spy samples the runner process (its own process, as in production) for 15 s during a
drain; the output is the functions holding the most samples, by themselves and with their
callees, in ``benchmarks/results/profile.txt``. DynamoDB Local's CPU per target write is
measured next to the runner's, from /proc.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import subprocess
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

BACKLOG = int(os.environ.get("BENCH_PROFILE_BACKLOG", "8000"))
SECONDS = 15


def summarize(raw: str, top: int = 25) -> str:
    """py-spy's raw (collapsed) stacks -> the busiest functions, self and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]
        total += int(count)
        if frames:
            own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} samples of the runner's busy threads", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    RESULTS.mkdir(exist_ok=True)
    raw_path = Path(tempfile.mkdtemp()) / "raw.txt"
    with fresh_server() as server:
        fill_backlog(server.endpoint_url, "Profiled", BACKLOG)
        config = write_config(
            Path(tempfile.mkdtemp()) / "p.toml",
            dict.fromkeys(REGIONS, server.endpoint_url),
            "Profiled",
        )
        runner = RunnerProcess(config)
        try:
            runner.wait_until_serving()  # past startup and preflight
            time.sleep(1)
            java = server.pid
            before = (cpu_seconds(runner.process.pid), cpu_seconds(java))
            done_before = runner.metric_sum("dynamodb_replicator_applied_total")
            began = time.perf_counter()
            spy = Path(sys.executable).parent / "py-spy"
            command = [str(spy), "record", "--pid", str(runner.process.pid), "--format", "raw"]
            command += ["--duration", str(SECONDS), "--rate", "100", "--nonblocking"]
            done = subprocess.run(
                [*command, "-o", str(raw_path)], capture_output=True, text=True, check=False
            )
            writes = runner.metric_sum("dynamodb_replicator_applied_total") - done_before
            elapsed = time.perf_counter() - began
            after = (cpu_seconds(runner.process.pid), cpu_seconds(java))
        finally:
            runner.stop()
    if done.returncode != 0 or not raw_path.exists():
        raise SystemExit(f"py-spy failed (it needs ptrace permission): {done.stderr.strip()}")
    header = (
        f"drain of {BACKLOG} inserts into {len(REGIONS) - 1} targets, sampled for "
        f"{elapsed:.1f} s: {writes:.0f} target writes ({writes / elapsed:.0f}/s)\n"
        f"CPU per target write: runner {1000 * (after[0] - before[0]) / max(writes, 1):.2f} ms, "
        f"DynamoDB Local {1000 * (after[1] - before[1]) / max(writes, 1):.2f} ms\n\n"
    )
    text = header + summarize(raw_path.read_text()) + "\n"
    (RESULTS / "profile.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
