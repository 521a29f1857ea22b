"""Cross-region round trips: drain and lag with a delay added to every call to the targets.

    .venv/bin/python -m benchmarks.bench_rtt

The runner sits beside the source region; a delaying proxy (``delay_proxy``, its own
process) in front of the same DynamoDB Local adds ``delay`` ms to every call to the two
target regions. The baseline goes through the proxy too, with no delay, so a ratio shows
what the round trip costs and nothing else. Each drain (a backlog of 2,000 inserts into
three regions) gets a fresh server: DynamoDB Local slows down as stream records pile up.
"""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any

from benchmarks.bench_runner import LAG_RATE, PAIRS, drain, lag
from benchmarks.common import fresh_server, report
from benchmarks.delay_proxy import DelayProxy
from dynamodb_replicator.core.settings import ReplicationSettings

__all__ = ["DELAYS", "DEPTHS", "measure"]

BACKLOG = int(os.environ.get("BENCH_RTT_BACKLOG", "2000"))
DELAY_MS = 100  # the delay of the headline figures
DELAYS = (0, 50, 100, 200)  # the plot's added round trips, at the default depth
DEPTHS = (16, 64, 128)  # writes in flight per target, at DELAY_MS


def delayed_drain(delay_ms: int, max_workers: int) -> dict[str, Any]:
    """A drain of BACKLOG inserts with ``delay_ms`` added to each call to the targets."""
    with fresh_server() as server, DelayProxy(server.port, delay_ms) as proxy:
        result = drain(
            server.endpoint_url,
            BACKLOG,
            f"Rtt{delay_ms}d{max_workers}",
            targets_via=proxy.endpoint_url,
            max_workers=max_workers,
        )
    return {
        "delay_ms": delay_ms,
        "max_workers": max_workers,
        "target_writes_per_s": round(result["drain_target_writes_per_s"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "runner_cpu_share": round(result["runner_cpu_share"], 2),
    }


def delayed_lag(delay_ms: int) -> dict[str, Any]:
    """Lag of updates at LAG_RATE writes/s with ``delay_ms`` added to each target call."""
    with fresh_server() as server, DelayProxy(server.port, delay_ms) as proxy:
        return lag(server.endpoint_url, LAG_RATE, "RttLag", targets_via=proxy.endpoint_url)


def measure() -> dict[str, Any]:
    """The ratio and lag at DELAY_MS, drains over DELAYS and DEPTHS (``_drains`` keeps every
    point for the plot)."""
    default = ReplicationSettings().max_workers
    runs: dict[tuple[int, int], dict[str, Any]] = {}
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    # The headline ratio over PAIRS pairs, the order alternating (no delay first, then
    # delay first, ...): the machine is shared and one pair has read 0.73 to 1.01.
    for n in range(PAIRS):
        order = [(0, default), (DELAY_MS, default)]
        got = {key: delayed_drain(*key) for key in (order if n % 2 == 0 else order[::-1])}
        pairs.append((got[(DELAY_MS, default)], got[(0, default)]))
        runs.update(got)
    for delay in DELAYS:
        runs.setdefault((delay, default), delayed_drain(delay, default))
    for depth in DEPTHS:
        runs.setdefault((DELAY_MS, depth), delayed_drain(DELAY_MS, depth))
    lagged = delayed_lag(DELAY_MS)
    # The same lag through the same proxy with no delay: what the harness itself costs
    # (the proxy relays every call in Python, on the two cores the server and runner use).
    harness = delayed_lag(0)
    ratios = [slow["target_writes_per_s"] / fast["target_writes_per_s"] for slow, fast in pairs]
    result: dict[str, Any] = {
        "rtt_delay_ms": DELAY_MS,
        "rtt_backlog": BACKLOG,
        "rtt_max_workers": default,
        "rtt_drain_target_writes_per_s": statistics.median(
            slow["target_writes_per_s"] for slow, _ in pairs
        ),
        "rtt_baseline_target_writes_per_s": statistics.median(
            fast["target_writes_per_s"] for _, fast in pairs
        ),
        "rtt_drain_ratio": round(statistics.median(ratios), 3),
        "rtt_drain_ratio_min": round(min(ratios), 3),
        "rtt_drain_ratio_max": round(max(ratios), 3),
        "rtt_lag_p50_ms": round(lagged["lag_p50_ms"], 1),
        "rtt_lag_p99_ms": round(lagged["lag_p99_ms"], 1),
        "rtt_lag_write_rate": round(lagged["lag_write_rate"], 1),
        "rtt_settled_lag_p50_ms": round(lagged["settled_lag_p50_ms"], 1),
        "rtt_settled_lag_p99_ms": round(lagged["settled_lag_p99_ms"], 1),
        "rtt_lag_p50_ms_no_delay": round(harness["lag_p50_ms"], 1),
        "rtt_lag_p99_ms_no_delay": round(harness["lag_p99_ms"], 1),
    }
    for delay in DELAYS:
        result[f"rtt_drain_per_s_at_{delay}_ms"] = runs[(delay, default)]["target_writes_per_s"]
    for depth in DEPTHS:
        run = runs[(DELAY_MS, depth)]
        result[f"rtt_drain_per_s_depth_{depth}"] = run["target_writes_per_s"]
        result[f"rtt_peak_rss_mb_depth_{depth}"] = run["peak_rss_mb"]
    result["_drains"] = list(runs.values())
    one = {k: 1 for k in result if k.startswith(("rtt_drain_per_s_", "rtt_peak_rss_mb_depth"))}
    result["_samples"] = {
        **dict.fromkeys(("rtt_delay_ms", "rtt_backlog", "rtt_max_workers"), 1),  # settings
        **dict.fromkeys(
            (
                "rtt_drain_target_writes_per_s",
                "rtt_baseline_target_writes_per_s",
                "rtt_drain_ratio",
                "rtt_drain_ratio_min",
                "rtt_drain_ratio_max",
            ),
            PAIRS,
        ),
        **{k: lagged["lag_samples"] for k in result if k.startswith("rtt_lag_p")},
        **{k: lagged["settled_lag_samples"] for k in result if k.startswith("rtt_settled")},
        "rtt_lag_write_rate": lagged["lag_writes"],
        "rtt_lag_p50_ms_no_delay": harness["lag_samples"],
        "rtt_lag_p99_ms_no_delay": harness["lag_samples"],
        **one,  # one drain each (the plot's points)
    }
    result["rtt_lag_samples_missing"] = lagged["lag_samples_missing"]
    result["rtt_lag_samples_missing_no_delay"] = harness["lag_samples_missing"]
    result["_samples"]["rtt_lag_samples_missing"] = lagged["lag_samples"]
    result["_samples"]["rtt_lag_samples_missing_no_delay"] = harness["lag_samples"]
    return result


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    result = measure()
    report(result, "rtt.json")


if __name__ == "__main__":
    main()
