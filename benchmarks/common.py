"""Shared pieces of the benchmarks: a fresh server, tables, a ceiling measurement."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.tombstones import ensure_tombstone_table
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
RESULTS = Path(__file__).parent / "results"
CEILING_THREADS = (8, 16, 32, 64)  # a ceiling is the best rate over these thread counts
PAYLOAD = "x" * 120  # ~170-byte items, as in DESIGN.md's measurements


@contextmanager
def fresh_server() -> Iterator[DynamoDBLocal]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    # A shared machine under load can take minutes to start a JVM.
    with DynamoDBLocal(startup_timeout=180) as server:
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


def _best(count: int, work: Callable[[str, int], None]) -> tuple[float, int]:
    """Best rate of ``work(key prefix, n)`` over a few thread counts."""
    best, best_threads = 0.0, 0
    for threads in CEILING_THREADS:
        prefix = f"ceiling-{threads}-"
        rate = timed_parallel(count, threads, lambda n, p=prefix: work(p, n))  # type: ignore[misc]
        if rate > best:
            best, best_threads = rate, threads
    return best, best_threads


def conditional_put(target: Any, table: str, image: Mapping[str, Any]) -> None:
    """The baselines' one call: PutItem of ``image`` where the stored item is older (by
    ``__timestamp``), through ``target`` (a boto3 or lean client)."""
    target.put_item(
        TableName=table,
        Item=image,
        ConditionExpression="attribute_not_exists(#ts) OR #ts < :t",
        ExpressionAttributeNames={"#ts": "__timestamp"},
        ExpressionAttributeValues={":t": image["__timestamp"]},
    )


def conditional_put_ceiling(endpoint: str, table: str, count: int = 4000) -> tuple[float, int]:
    """Best raw conditional PutItem rate from this client, over a few thread counts."""
    c = client(endpoint, REGIONS[0], pool=80)

    def put(prefix: str, n: int) -> None:
        conditional_put(c, table, item(f"{prefix}{n}", n))

    return _best(count, put)


def write_config(
    path: Path, endpoints: Mapping[str, str], table: str, extra: Mapping[str, int] | None = None
) -> Path:
    """A runner configuration: ``endpoints`` by region (the first is the source), ``extra``
    top-level settings such as ``max_workers``."""
    settings = "".join(f"{key} = {value}\n" for key, value in (extra or {}).items())
    text = f'tables = ["{table}"]\nconflict_log = "off"\n{settings}' + "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{url}"\n' for r, url in endpoints.items()
    )
    path.write_text(text)
    return path


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class RunnerProcess:
    """``dynamodb-replicator run`` as its own process, observed through its metrics port."""

    def __init__(self, config: Path, prefix: Sequence[str] = ()) -> None:
        """``prefix``: what runs the command line instead of the console script (such as
        ``benchmarks.cpu_profiled`` under the profiler)."""
        self.port = free_port()
        executable = prefix or [str(Path(sys.executable).parent / "dynamodb-replicator")]
        command = [*executable, "run", "--config", str(config), "--log-level", "ERROR"]
        self.process = subprocess.Popen(
            [*command, "--metrics-port", str(self.port), "--metrics-host", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
        )

    def metric_sum(self, name: str | Sequence[str], **labels: str) -> float:
        """Sum of the samples of ``name`` (or of each of several names, from one scrape)
        whose labels include ``labels`` (0 before the endpoint answers). One scrape costs
        the runner about 3 ms of CPU (its whole page rendered), counted in its figures."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        names = (name,) if isinstance(name, str) else tuple(name)
        opening = tuple(n + "{" for n in names)
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if line.startswith(opening) and all(w in line for w in wanted):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def replicated(self, source: str) -> float:
        """Changes from ``source`` applied or found stale in the targets: one scrape."""
        names = [f"dynamodb_replicator_{n}_total" for n in ("applied", "stale")]
        return self.metric_sum(names, source=source)

    def wait_until_serving(self, timeout: float = 120.0) -> float:
        """Wait for the metrics endpoint (it starts after preflight); the moment it answered."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5):
                    return time.perf_counter()
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the runner exited") from None
                time.sleep(0.05)
        raise RuntimeError("the runner's metrics endpoint did not answer")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def peak_rss_mb(self) -> float:
        """The process's peak resident set (VmHWM), while it runs."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return -1.0

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def report(result: dict[str, Any], name: str) -> None:
    """Save ``result`` as results/NAME, print it as a table, then as one JSON line (last).

    Keys starting with ``_`` stay out, but ``_samples`` (figure -> how many measurements
    it rests on) becomes ``samples``; a figure without one is named in ``samples_unknown``
    (settings such as ``machine`` excepted)."""
    RESULTS.mkdir(exist_ok=True)
    figures = {k: v for k, v in result.items() if not k.startswith("_")}
    samples = dict(result.get("_samples", {}))
    figures["samples"] = {k: samples[k] for k in figures if k in samples}
    unknown = [k for k in figures if k not in samples and k not in SETTINGS]
    if unknown:
        figures["samples_unknown"] = unknown
    (RESULTS / name).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{'metric':36} value")
    for key, value in figures.items():
        if key != "samples":
            print(f"{key:36} {value}  (n={samples.get(key, '?')})")
    print(json.dumps(figures))


SETTINGS = frozenset(
    {
        "machine",
        "bench_minutes",
        "samples",
        "samples_unknown",
        # bench_cpu's settings and the load it ran under
        "runner_cpu_target_writes",
        "runner_cpu_load_average",
        "floor_load_average",
        "floor_threads",
        "floor_calls_per_sample",
        "floor_samples",
    }
)


def paired_ratio(
    numerator: Callable[[], float], denominator: Callable[[], float], pairs: int = 3
) -> dict[str, Any]:
    """``numerator() / denominator()`` over ``pairs`` pairs of runs, alternating which
    runs first (A B, B A, A B, ...) so a machine that speeds up or slows down during the
    benchmark tilts no ratio one way. One pair is not a figure: on a shared machine one
    ratio has read 0.73, 0.89 and 1.01 in successive runs."""
    ratios, tops, bottoms = [], [], []
    for n in range(pairs):
        if n % 2 == 0:
            top = numerator()
            bottom = denominator()
        else:
            bottom = denominator()
            top = numerator()
        tops.append(top)
        bottoms.append(bottom)
        ratios.append(top / bottom)
    return {
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "pairs": pairs,
        "ratios": [round(r, 3) for r in ratios],
        "numerators": [round(t, 1) for t in tops],
        "denominators": [round(b, 1) for b in bottoms],
    }


def flatten(prefix: str, paired: Mapping[str, Any]) -> dict[str, Any]:
    """A ``paired_ratio`` result as top-level figures: ``prefix`` (the median ratio),
    ``prefix_min``/``_max`` (its spread) and ``prefix_pairs`` (the samples it rests on)."""
    return {
        prefix: paired["ratio"],
        f"{prefix}_min": paired["ratio_min"],
        f"{prefix}_max": paired["ratio_max"],
        f"{prefix}_pairs": paired["pairs"],
    }
