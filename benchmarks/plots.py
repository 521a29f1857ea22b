"""PNG plots of a benchmark run: lag distribution and drain throughput over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

__all__ = ["plot_drain", "plot_lag", "plot_rtt"]


def plot_lag(latencies_ms: Sequence[float], rate: int, path: Path) -> Path:
    ordered = sorted(latencies_ms)
    figure, (histogram, cdf) = plt.subplots(1, 2, figsize=(10, 4))
    histogram.hist(ordered, bins=50, color="tab:blue")
    histogram.set_xlabel("lag (ms): write in the source to visible in the target")
    histogram.set_ylabel("target writes")
    histogram.set_title(f"lag at {rate} writes/s")
    fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
    cdf.plot(ordered, fractions, color="tab:blue")
    for quantile in (0.5, 0.99):
        value = ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]
        cdf.axvline(value, linestyle="--", color="grey")
        cdf.annotate(f"p{int(quantile * 100)} {value:.0f} ms", (value, quantile))
    cdf.set_xlabel("lag (ms)")
    cdf.set_ylabel("fraction of writes")
    cdf.set_title("cumulative")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_drain(
    samples: Sequence[tuple[float, float]], ceiling: float, naive: float, path: Path
) -> Path:
    """``samples``: (seconds, target writes done so far) from the runner's metrics. The
    counters move a page (up to 1,000 records) at a time, so the plot shows the cumulative
    count; the slopes of the reference lines are the baselines' rates."""
    times = [t for t, _ in samples]
    done = [n for _, n in samples]
    end = times[-1] if times else 1.0
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(times, done, label="runner: target writes done")
    axis.plot([0, end], [0, ceiling * end], "--", color="grey", label="at the raw PutItem ceiling")
    axis.plot([0, end], [0, naive * end], ":", color="tab:red", label="at the naive loop's rate")
    axis.set_ylim(0, max(done[-1] if done else 1, 1) * 1.15)
    axis.set_xlabel("seconds since the runner started")
    axis.set_ylabel("target writes (cumulative)")
    axis.set_title("draining a backlog of inserts into two regions")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_rtt(drains: Sequence[Mapping[str, Any]], default_depth: int, path: Path) -> Path:
    """``drains``: one dict per drain (``delay_ms``, ``max_workers``,
    ``target_writes_per_s``). A line per depth measured at more than one delay, a point
    for the others."""
    figure, axis = plt.subplots(figsize=(8, 4))
    depths = sorted({int(d["max_workers"]) for d in drains})
    for depth in depths:
        points = sorted(
            (int(d["delay_ms"]), float(d["target_writes_per_s"]))
            for d in drains
            if d["max_workers"] == depth
        )
        style = "o-" if len(points) > 1 else "s"
        label = f"{depth} writes in flight per target" + (
            " (default)" if depth == default_depth else ""
        )
        axis.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    axis.set_xlabel("round trip added to every call to the two targets (ms)")
    axis.set_ylabel("target writes/s (backlog of inserts)")
    axis.set_title("drain rate against cross-region round trip (runner beside the source)")
    axis.set_ylim(bottom=0)
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
