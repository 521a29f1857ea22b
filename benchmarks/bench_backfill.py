"""add-region and diff benchmark, against baselines measured in the same run.

    .venv/bin/python -m benchmarks.bench_backfill

* backfill: add-region's copy of 50,000 items (~200 bytes) vs raw BatchWriteItem of the same
  items into an empty table (best of 4/8 threads);
* diff: of two regions holding the same 50,000 items vs a raw 4-segment parallel Scan of both;
* peak memory of `diff` (a separate process) on 200,000 items per region.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import client, create_table, fresh_server, report
from dynamodb_replicator.aws.scan import parallel_scan

ITEMS = int(os.environ.get("BENCH_ITEMS", "50000"))
DIFF_ITEMS = int(os.environ.get("BENCH_DIFF_ITEMS", "200000"))
SOURCE, OTHER, NEW = "us-east-1", "eu-west-1", "us-west-2"


def payload(n: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"item-{n:07d}"},
        "__timestamp": {"N": str(1_000_000 + n)},
        "payload": {"S": "y" * 150},
    }


def batch_write(endpoint: str, region: str, table: str, count: int, threads: int) -> float:
    c = client(endpoint, region, pool=threads + 2)

    def chunk(start: int) -> None:
        requests = [
            {"PutRequest": {"Item": payload(n)}} for n in range(start, min(count, start + 25))
        ]
        while requests:
            left = c.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {})
            requests = left.get(table, [])

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(chunk, range(0, count, 25)))
    return count / (time.perf_counter() - began)


def scan_rate(endpoint: str, regions: list[str], table: str) -> float:
    began = time.perf_counter()
    total = 0
    for region in regions:
        counted = [0]

        def on_page(
            segment: int, items: list[dict[str, Any]], _: Any, counted: list[int] = counted
        ) -> None:
            counted[0] += len(items)

        parallel_scan(client(endpoint, region), table, region=region, segments=4, on_page=on_page)
        total += counted[0]
    return total / (time.perf_counter() - began)


# Runs the CLI and prints that process's own peak RSS (DynamoDB Local is another child of
# the benchmark, so RUSAGE_CHILDREN would report the JVM).
_MEASURED = (
    "import resource, sys\n"
    "from dynamodb_replicator.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_cli(args: list[str]) -> tuple[float, int, str]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    output = done.stdout + done.stderr
    peak = [line.split()[1] for line in output.splitlines() if line.startswith("PEAK_KB")]
    return seconds, int(peak[0]) if peak else -1, output


def config(path: Path, endpoint: str, regions: list[str], table: str) -> Path:
    text = f'tables = ["{table}"]\n' + "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{endpoint}"\n' for r in regions
    )
    path.write_text(text)
    return path


def measure() -> dict[str, Any]:
    """Backfill and diff figures, each against its baseline on the same server."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    result: dict[str, Any] = {"items": ITEMS, "diff_items": DIFF_ITEMS}
    with fresh_server() as server:
        endpoint = server.endpoint_url
        create_table(endpoint, SOURCE, "Raw", stream=False)
        create_table(endpoint, SOURCE, "Raw8", stream=False)
        raw = max(
            batch_write(endpoint, SOURCE, "Raw", ITEMS, 4),
            batch_write(endpoint, SOURCE, "Raw8", ITEMS, 8),
        )
        result["ceiling_batch_write_per_s"] = round(raw, 1)
        for region in (SOURCE, OTHER):
            create_table(endpoint, region, "Copy")
            batch_write(endpoint, region, "Copy", ITEMS, 8)
        result["raw_scan_both_per_s"] = round(scan_rate(endpoint, [SOURCE, OTHER], "Copy"), 1)
        cfg = config(tmp / "copy.toml", endpoint, [SOURCE, OTHER], "Copy")
        seconds, _, output = run_cli(["diff", "--config", str(cfg)])
        result["diff_per_s"] = round(2 * ITEMS / seconds, 1)
        result["diff_ratio"] = round(result["diff_per_s"] / result["raw_scan_both_per_s"], 3)
        seconds, _, output = run_cli(
            [
                "add-region",
                "--config",
                str(cfg),
                "--region",
                NEW,
                "--endpoint-url",
                endpoint,
                "--segments",
                "4",
            ]
        )
        result["add_region_seconds"] = round(seconds, 1)  # creation, copy, final diff
        copy_rate = re.search(r"copy took [0-9.]+ s \(([0-9,]+) items/s\)", output)
        assert copy_rate, output
        result["backfill_items_per_s"] = float(copy_rate.group(1).replace(",", ""))
        result["backfill_ratio"] = round(result["backfill_items_per_s"] / raw, 3)
        result["add_region_ok"] = "matches" in output or "identical" in output
    with fresh_server() as server:
        endpoint = server.endpoint_url
        for region in (SOURCE, OTHER):
            create_table(endpoint, region, "Big", stream=False)
            batch_write(endpoint, region, "Big", DIFF_ITEMS, 8)
        cfg = config(tmp / "big.toml", endpoint, [SOURCE, OTHER], "Big")
        seconds, peak_kb, output = run_cli(["diff", "--config", str(cfg)])
        result["diff_200k_seconds"] = round(seconds, 1)
        result["diff_200k_peak_rss_mb"] = round(peak_kb / 1024, 1)
        result["diff_200k_identical"] = "identical" in output
    return result


def main() -> None:
    report(measure(), "backfill.json")


if __name__ == "__main__":
    main()
