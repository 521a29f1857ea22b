"""add-region and diff benchmark, against baselines measured in the same run.

    .venv/bin/python -m benchmarks.bench_backfill

* backfill: add-region's copy of 50,000 items (~200 bytes) vs raw BatchWriteItem of the same
  items into an empty table (best of 4/8 threads);
* diff: of two regions holding the same 50,000 items vs a raw 4-segment parallel Scan of both;
* peak memory of `diff` (a separate process) on 200,000 items per region.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import client, create_table, flatten, fresh_server, paired_ratio, report
from dynamodb_replicator.aws.scan import parallel_scan
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.policy import seal

ITEMS = int(os.environ.get("BENCH_ITEMS", "50000"))
DIFF_ITEMS = int(os.environ.get("BENCH_DIFF_ITEMS", "200000"))
SOURCE, OTHER = "us-east-1", "eu-west-1"
NEW = ("us-west-2", "us-west-1", "ca-central-1", "sa-east-1", "eu-north-1")  # one per pair
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))  # the diff ratio rests on this many pairs


def payload(n: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"item-{n:07d}"},
        "__timestamp": {"N": str(1_000_000 + n)},
        "payload": {"S": "y" * 150},
    }


def replica(item: dict[str, Any], origin: str) -> dict[str, Any]:
    """``item`` (written in ``origin``) as the replicator copies it into another region:
    the same version, labelled with its origin (``core.writes``)."""
    fields = SystemAttributes()
    return {
        **item,
        fields.origin: {"S": origin},
        fields.marker: {"N": item[fields.timestamp]["N"]},
        fields.nonce: {"S": seal("bench", item, fields)},
    }


def batch_write(
    endpoint: str, region: str, table: str, count: int, threads: int, *, origin: str = ""
) -> float:
    """``count`` items into ``region``: written there, or replicas of ``origin``'s."""
    c = client(endpoint, region, pool=threads + 2)

    def chunk(start: int) -> None:
        items = (payload(n) for n in range(start, min(count, start + 25)))
        requests = [
            {"PutRequest": {"Item": replica(item, origin) if origin else item}} for item in items
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
    if done.returncode != 0:  # a failed command has no rate worth reporting
        raise RuntimeError(
            f"dynamodb-replicator {' '.join(args)}: exit {done.returncode}\n{output}"
        )
    peak = [line.split()[1] for line in output.splitlines() if line.startswith("PEAK_KB")]
    return seconds, int(peak[0]) if peak else -1, output


def identical(output: str, what: str) -> None:
    """A diff that measured anything but identical regions measured the wrong work."""
    if "identical" not in output:
        raise RuntimeError(f"{what}: the regions are not identical\n{output}")


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
        for region in (SOURCE, OTHER):  # one version in both: OTHER holds replicas
            create_table(endpoint, region, "Copy")
            batch_write(endpoint, region, "Copy", ITEMS, 8, origin=SOURCE * (region == OTHER))
        cfg = config(tmp / "copy.toml", endpoint, [SOURCE, OTHER], "Copy")

        def diff_rate() -> float:
            seconds, _, output = run_cli(["diff", "--config", str(cfg)])
            identical(output, f"diff of {ITEMS} items")
            return 2 * ITEMS / seconds

        diffs = paired_ratio(diff_rate, lambda: scan_rate(endpoint, [SOURCE, OTHER], "Copy"))
        result["raw_scan_both_per_s"] = statistics.median(diffs["denominators"])
        result["diff_per_s"] = statistics.median(diffs["numerators"])
        result.update(flatten("diff_ratio", diffs))
        added: list[str] = []

        def backfill_rate() -> float:
            """add-region into a region of its own; the copy's items per second."""
            region = NEW[len(added)]
            own = config(tmp / f"copy-{region}.toml", endpoint, [SOURCE, OTHER], "Copy")
            seconds, _, output = run_cli(
                [
                    "add-region",
                    "--config",
                    str(own),
                    "--region",
                    region,
                    "--endpoint-url",
                    endpoint,
                    "--segments",
                    "4",
                ]
            )
            if "matches" not in output and "identical" not in output:
                raise RuntimeError(f"add-region {region}: the copy does not match\n{output}")
            added.append(f"{seconds:.1f}")
            copy_rate = re.search(r"copy took [0-9.]+ s \(([0-9,]+) items/s\)", output)
            assert copy_rate, output
            return float(copy_rate.group(1).replace(",", ""))

        raws = itertools.count()

        def raw_rate() -> float:
            table = f"RawPair{next(raws)}"
            create_table(endpoint, SOURCE, table, stream=False)
            return batch_write(endpoint, SOURCE, table, ITEMS, 8)

        backfills = paired_ratio(backfill_rate, raw_rate, PAIRS)
        result["add_region_seconds"] = added  # each: creation, copy, final diff
        result["backfill_items_per_s"] = statistics.median(backfills["numerators"])
        result.update(flatten("backfill_ratio", backfills))
        result["add_region_ok"] = True  # each add-region exited 0 and its diff matched
    with fresh_server() as server:
        endpoint = server.endpoint_url
        for region in (SOURCE, OTHER):
            create_table(endpoint, region, "Big", stream=False)
            batch_write(endpoint, region, "Big", DIFF_ITEMS, 8, origin=SOURCE * (region == OTHER))
        cfg = config(tmp / "big.toml", endpoint, [SOURCE, OTHER], "Big")
        seconds, peak_kb, output = run_cli(["diff", "--config", str(cfg)])
        identical(output, f"diff of {DIFF_ITEMS} items")
        result["diff_200k_seconds"] = round(seconds, 1)
        result["diff_200k_peak_rss_mb"] = round(peak_kb / 1024, 1)
        result["diff_200k_identical"] = True
    result["_samples"] = {
        **dict.fromkeys(result, 1),  # one run each
        **dict.fromkeys(("items", "diff_items"), 1),  # settings
        "ceiling_batch_write_per_s": 2,  # the better of two thread counts
        "raw_scan_both_per_s": PAIRS,
        "diff_per_s": PAIRS,
        "backfill_items_per_s": PAIRS,
        "add_region_seconds": PAIRS,
        "add_region_ok": PAIRS,
        **{f"backfill_ratio{x}": PAIRS for x in ("", "_min", "_max", "_pairs")},
        **dict.fromkeys(
            ("diff_ratio", "diff_ratio_min", "diff_ratio_max", "diff_ratio_pairs"), PAIRS
        ),
    }
    return result


def main() -> None:
    report(measure(), "backfill.json")  # report() keeps ``_samples`` as ``samples``


if __name__ == "__main__":
    main()
