"""The runner's counters record, its one aggregation per pair, and its Prometheus metrics
(names and labels as docs/reference/metrics.md lists them, read back with prometheus_client's
parser)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.runner.metrics import RunnerMetrics
from dynamodb_replicator.runner.metrics_server import MetricsServer
from dynamodb_replicator.runner.reports import (
    PairTotals,
    ShardReport,
    TargetReport,
    pair_totals,
)
from dynamodb_replicator.testing.clock import ManualClock

US, EU = "us-east-1", "eu-west-1"
PAIR = {"table": "T", "source": US, "target": EU}


def report(shard: str, *targets: TargetReport, updated: float = 100.0) -> ShardReport:
    return ShardReport("T", US, "label", shard, "w1", updated, False, targets)


def test_counters_add_up_and_count_a_batch_per_target() -> None:
    a, b = PairCounters(1, 2, 3, 4, 5, 6), PairCounters(applied=10, won=1)
    assert a + b == PairCounters(11, 2, 3, 4, 5, 7)
    down = TargetResult(EU, applied=3, stale=1, failed_sequence="7", failed=2, retried=2)
    result = BatchResult({EU: down, US: TargetResult(US, applied=4)})
    assert PairCounters.of(result, EU) == PairCounters(applied=3, stale=1, failed=2, retried=2)
    assert PairCounters.of(result, US) == PairCounters(applied=4)


def test_pair_totals_sum_counters_and_keep_the_worst_gauges() -> None:
    # both errors came after their target's last advance: unresolved, the newer is shown
    old_error = TargetReport(
        EU, PairCounters(applied=2), lag_s=3.0, backlog=4, advanced_at=40.0,
        last_error="old", last_error_at=45.0,
    )  # fmt: skip
    new_error = TargetReport(
        EU, PairCounters(applied=5, lost=1), lag_s=1.0, stream_age_s=2.0, backlog=1,
        backlog_more=True, advanced_at=90.0, last_error="new", last_error_at=95.0,
    )  # fmt: skip
    totals = pair_totals([report("s1", old_error), report("s2", new_error)], now=100.0)
    assert totals == {
        ("T", US, EU): PairTotals(
            PairCounters(applied=7, lost=1),
            shards=2,
            lag_s=3.0,
            stream_age_s=2.0,
            backlog=5,
            backlog_more=True,
            stalled_s=60.0,
            last_error="new",
            last_error_at=95.0,
            idle=False,
        )
    }


def test_an_idle_pair_shows_no_frozen_lag() -> None:
    quiet = TargetReport(EU, lag_s=3.0, stream_age_s=2.0, backlog=0, advanced_at=50.0)
    recent = TargetReport(EU, lag_s=0.5, backlog=0, advanced_at=95.0)
    (idle,) = pair_totals([report("s1", quiet)], now=100.0).values()
    assert idle.idle and idle.lag_s is None and idle.stream_age_s is None
    (busy,) = pair_totals([report("s1", quiet), report("s2", recent)], now=100.0).values()
    assert not busy.idle and busy.lag_s == 0.5  # the quiet shard adds no old lag


def samples(metrics: RunnerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_every_report_and_gauge_the_held_shards() -> None:
    held = report(
        "s1",
        TargetReport(EU, PairCounters(3, 1, 1, 2, 1, 0), lag_s=0.5, backlog=4, advanced_at=90.0),
    )
    retired = report("s0", TargetReport(EU, PairCounters(applied=2, won=2), lag_s=9.0))
    metrics = RunnerMetrics(
        lambda: [(held, True), (retired, False)], worker="w1", clock=ManualClock(100.0)
    )
    found = samples(metrics)

    def value(name: str, **labels: str) -> float:
        return found[(f"dynamodb_replicator_{name}", frozenset(labels.items()))]

    assert value("applied_total", **PAIR) == 5  # counters: held and retired shards
    assert (value("stale_total", **PAIR), value("failed_total", **PAIR)) == (1, 1)
    assert value("retried_total", **PAIR) == 2
    assert value("conflicts_total", **PAIR, outcome="lost") == 1
    assert value("conflicts_total", **PAIR, outcome="won") == 2
    assert value("lag_seconds", **PAIR) == 0.5  # gauges: the held shard only
    assert value("backlog_records", **PAIR) == 4
    assert value("stalled_seconds", **PAIR) == 10.0
    assert ("dynamodb_replicator_stream_age_seconds", frozenset(PAIR.items())) not in found
    assert value("shards_owned", table="T", source=US, worker="w1") == 1
    assert value("lease_held", table="T", source=US, shard="s1") == 1


def test_lag_histogram_counts_each_batch_in_its_bucket() -> None:
    metrics = RunnerMetrics(list, worker="w1", clock=ManualClock(0.0))
    tell = metrics.lag_observer("T", US)
    tell(EU, 0.3)
    tell(EU, 7.0)
    found = samples(metrics)

    def bucket(le: str) -> float:
        return found[
            ("dynamodb_replicator_batch_lag_seconds_bucket", frozenset({**PAIR, "le": le}.items()))
        ]

    assert (bucket("0.25"), bucket("0.5"), bucket("5.0"), bucket("10.0"), bucket("+Inf")) == (
        0, 1, 1, 2, 2,
    )  # fmt: skip
    assert found[("dynamodb_replicator_batch_lag_seconds_sum", frozenset(PAIR.items()))] == 7.3


def test_metrics_server_serves_the_registry_at_metrics_only() -> None:
    metrics = RunnerMetrics(list, worker="w1", clock=ManualClock(0.0))
    metrics.lag_observer("T", US)(EU, 0.1)
    server = MetricsServer("127.0.0.1", 0, metrics.registry).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b"dynamodb_replicator_batch_lag_seconds_count" in response.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}/other", timeout=5)
        assert missing.value.code == 404
    finally:
        server.close()


def test_backoff_ceiling_doubles_to_the_cap_and_delay_draws_below_it() -> None:
    backoff = Backoff(base=0.1, cap=1.0, rng=lambda low, high: (low + high) / 2)
    assert [backoff.ceiling(n) for n in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff.delay(2) == 0.2
    assert backoff.ceiling(10**6) == 1.0  # a long outage does not overflow
