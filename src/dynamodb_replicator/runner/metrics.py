"""The runner's Prometheus metrics, in one registry: counters and gauges computed from its
shard reports at scrape time, and the lag histogram observed as pages are applied."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.runner.reports import Pair, PairTotals, ShardReport, pair_totals
from dynamodb_replicator.runner.shardworker import LagObserver

__all__ = ["LAG_BUCKETS", "PREFIX", "ReachabilityCollector", "ReportCollector", "RunnerMetrics"]

PREFIX = "dynamodb_replicator"
PAIR_LABELS = ("table", "source", "target")
# Seconds: from a healthy runner's tens of milliseconds to an outage of many minutes.
LAG_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# Every shard report of the process; True marks the shards it holds now.
Reports = Callable[[], Sequence[tuple[ShardReport, bool]]]
# Parked records waiting for redrive, per (table, source region).
Parked = Callable[[], Mapping[tuple[str, str], int]]

# PairCounters fields, each served as dynamodb_replicator_<field>_total.
_COUNTERS: tuple[tuple[str, str], ...] = (
    ("applied", "changes applied to the target"),
    ("stale", "changes the target rejected as older than what it holds"),
    ("failed", "writes that failed after their retries (retried later)"),
    ("retried", "write attempts retried after a retryable error"),
    (
        "parked",
        "records this worker parked (failing by themselves) instead of applied; see redrive",
    ),
    ("refused", "puts kept out of the target by residency (a delete of the version instead)"),
    ("removed", "writes removed from the source because they were made outside their scope"),
)
_GAUGES: tuple[tuple[str, Callable[[PairTotals], float | None], str], ...] = (
    (
        "lag_seconds",
        lambda t: 0.0 if t.idle else t.lag_s,
        "age of the newest change applied, by __timestamp where the stream time confirms it,"
        " else by stream time (max over busy shards); 0 while nothing waits (idle)",
    ),
    (
        "stream_age_seconds",
        lambda t: 0.0 if t.idle else t.stream_age_s,
        "age (by stream record time) of the last record applied; 0 while idle",
    ),
    (
        "backlog_records",
        lambda t: t.backlog,
        "records known beyond the target's checkpoint (from stream positions)",
    ),
    (
        "stalled_seconds",
        lambda t: max(0.0, t.stalled_s or 0.0),
        "time since a target with records beyond its checkpoint last advanced",
    ),
)


class ReportCollector(Collector):
    """Counters from every shard report of this process (they never go down); gauges from the
    shards it holds now. Called once per scrape."""

    def __init__(
        self, reports: Reports, *, worker: str, clock: Clock, parked: Parked | None = None
    ) -> None:
        self.reports = reports
        self.worker = worker
        self.clock = clock
        self.parked = parked

    def collect(self) -> Iterable[Metric]:
        reports = self.reports()
        now = self.clock.now()
        everything = pair_totals((r for r, _ in reports), now=now)
        held = [r for r, holding in reports if holding]
        yield from _counters(everything)
        yield from _gauges(pair_totals(held, now=now))
        yield from self._leases(held)
        if self.parked is not None:
            waiting = GaugeMetricFamily(
                f"{PREFIX}_parked_records",
                "parked records waiting for `dynamodb-replicator redrive`",
                labels=("table", "source"),
            )
            for (table, source), count in sorted(self.parked().items()):
                waiting.add_metric((table, source), count)
            yield waiting

    def _leases(self, held: Sequence[ShardReport]) -> Iterable[Metric]:
        owned = GaugeMetricFamily(
            f"{PREFIX}_shards_owned",
            f"shards whose lease this worker ({self.worker}) holds",
            labels=("table", "source", "worker"),
        )
        for (table, source), count in Counter((r.table, r.source) for r in held).items():
            owned.add_metric((table, source, self.worker), count)
        leases = GaugeMetricFamily(
            f"{PREFIX}_lease_held",
            "1 for each shard this worker holds",
            labels=("table", "source", "shard"),
        )
        for report in held:
            leases.add_metric((report.table, report.source, report.shard_id), 1)
        return owned, leases


def _counters(pairs: dict[Pair, PairTotals]) -> Iterable[Metric]:
    for field, help_text in _COUNTERS:
        family = CounterMetricFamily(f"{PREFIX}_{field}", help_text, labels=PAIR_LABELS)
        for pair, totals in pairs.items():
            family.add_metric(pair, getattr(totals.counters, field))
        yield family
    conflicts = CounterMetricFamily(
        f"{PREFIX}_conflicts",
        "changes that lost to, or won over, a different version written in another region"
        " (outcome label); a replay or a region's own later write is stale, not a conflict",
        labels=(*PAIR_LABELS, "outcome"),
    )
    for pair, totals in pairs.items():
        conflicts.add_metric((*pair, "lost"), totals.counters.lost)
        conflicts.add_metric((*pair, "won"), totals.counters.won)
    yield conflicts


def _gauges(pairs: dict[Pair, PairTotals]) -> Iterable[Metric]:
    for name, read, help_text in _GAUGES:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=PAIR_LABELS)
        for pair, totals in pairs.items():
            value = read(totals)
            if value is not None:
                family.add_metric(pair, value)
        yield family


class ReachabilityCollector(Collector):
    """``region_reachable``: 1 for each configured region the runner reaches, 0 for those it
    cannot (their pairs wait, and the region is checked again in the background);
    ``discovery_retries_total``: the coordination requests retried in each region (a busy
    answer is retried, and does not make the region unreachable)."""

    def __init__(
        self,
        reachable: Callable[[], Mapping[str, bool]],
        retries: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.reachable = reachable
        self.retries = retries

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            f"{PREFIX}_region_reachable",
            "1 when the runner reaches the region, 0 while its pairs wait for it",
            labels=("region",),
        )
        for region, up in self.reachable().items():
            family.add_metric((region,), 1.0 if up else 0.0)
        yield family
        retried = CounterMetricFamily(
            f"{PREFIX}_discovery_retries",
            "stream discovery requests retried after a throttle, an HTTP 5xx or a dropped "
            "connection; the region stays reachable unless it still cannot be connected to",
            labels=("region",),
        )
        for region, count in sorted(self.retries().items()):
            retried.add_metric((region,), count)
        yield retried


class RunnerMetrics:
    """The registry ``/metrics`` serves, and the lag histogram the shard workers feed."""

    def __init__(
        self,
        reports: Reports,
        *,
        worker: str,
        clock: Clock,
        parked: Parked | None = None,
        reachable: Callable[[], Mapping[str, bool]] | None = None,
        retries: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ReportCollector(reports, worker=worker, clock=clock, parked=parked))
        if reachable is not None:
            self.registry.register(ReachabilityCollector(reachable, retries))
        self.lag = Histogram(
            f"{PREFIX}_batch_lag_seconds",
            "lag (clock as lag_seconds) of each batch of changes a target applied",
            labelnames=PAIR_LABELS,
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.violations = PromCounter(
            f"{PREFIX}_contract_violations",
            "application writes that break the data contract (kind: kept-timestamp, "
            "seconds-timestamp, reverted, outside-scope); each is logged as a WARNING",
            labelnames=("table", "source", "kind"),
            registry=self.registry,
        )

    def count_violations(self, table: str, source: str, kinds: Iterable[str]) -> None:
        """Count contract violations (``core.contract``) written in ``source``."""
        for kind in kinds:
            self.violations.labels(table, source, kind).inc()

    def lag_observer(self, table: str, source: str) -> LagObserver:
        """What a shard worker of ``table`` in ``source`` tells each batch's lag."""

        def observe(target: str, seconds: float) -> None:
            self.lag.labels(table, source, target).observe(seconds)

        return observe
