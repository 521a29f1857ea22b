"""``status``: the health of every (table, source, target) pair, from the runners' shard
reports and leases in each source region's state table. Pure: ``now`` is passed in.

A pair is **stuck** when records exist beyond its checkpoint (stream positions, whatever
the other targets did) and it has not advanced for ``stuck_after`` seconds, when no runner
has reported on a shard for that long, or when its source region's state cannot be read.
A pair whose source region has never had a runner (no state table there, or one with no
report, lease or live worker of any runner) is **not started**, not stuck: nothing went
wrong yet, nothing is replicated from there either, and ``status`` says so.
A target catching up from an older position advances, so it is not stuck. Parked records
(core/parking.py) are named apart: they wait for ``redrive``, and ``status`` exits 1 while
any does. The report itself, as text or JSON, is ops/status_report.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.runner.reports import PairTotals, ShardReport, TargetReport, pair_totals

__all__ = [
    "REPORT_EXPIRY_S",
    "Lease",
    "PairStatus",
    "RegionState",
    "never_run",
    "summarize",
]

# Reports older than this are ignored as of shards gone from the stream: twice the stream's
# 24 h retention. (Formerly RETENTION_S; it is not the stream retention itself, nor the
# tombstone TTL, although that is 48 h by default too.)
REPORT_EXPIRY_S = 2 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Lease:
    shard: str  # TABLE|STREAM|SHARD
    owner: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class RegionState:
    """What one source region's state table holds; ``error`` when it could not be read."""

    reports: tuple[ShardReport, ...] = ()
    leases: tuple[Lease, ...] = ()
    workers: tuple[str, ...] = ()
    parked: tuple[ParkedRecord, ...] = ()
    error: str | None = None
    absent: bool = False  # no state table in this region: no runner has run there
    # (worker, region it cannot reach, since (epoch seconds), why), from live workers
    unreachable: tuple[tuple[str, str, float, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PairStatus:
    """One pair's combined reports, and whether (and why) it is stuck."""

    table: str
    source: str
    target: str
    totals: PairTotals = field(default_factory=PairTotals)
    stuck: bool = False
    reasons: tuple[str, ...] = field(default=())
    parked: int = 0  # parked records of this pair waiting for redrive
    started: bool = True  # False: no runner has run in the source region yet


def never_run(state: RegionState) -> bool:
    """No runner has run in this region: no state table, or one without any report,
    lease or live worker (a runner leaves all three)."""
    if state.absent:
        return True
    return state.error is None and not (state.reports or state.leases or state.workers)


def _reasons(
    reports: Sequence[tuple[ShardReport, TargetReport]], *, now: float, stuck_after: float
) -> list[str]:
    reasons: list[str] = []
    for report, target_report in reports:
        silent = now - report.updated_at
        if silent > stuck_after:
            reasons.append(
                f"shard {report.shard_id}: no report for {silent:.0f} s (no live runner holds it)"
            )
        if target_report.backlog and target_report.advanced_at is not None:
            stalled = now - target_report.advanced_at
            if stalled > stuck_after:
                more = "+" if target_report.backlog_more else ""
                why = f": {target_report.last_error}" if target_report.last_error else ""
                reasons.append(
                    f"shard {report.shard_id}: {target_report.backlog}{more} records waiting "
                    f"beyond its checkpoint, no progress for {stalled:.0f} s{why}"
                )
    if not reports:
        reasons.append("no runner has reported on this table's shards")
    return reasons


def _unreachable(states: Mapping[str, RegionState], pair: tuple[str, str], now: float) -> list[str]:
    """Why a pair waits: a live worker cannot reach one of its regions."""
    seen = {
        (worker, region, since, why)
        for state in states.values()
        for worker, region, since, why in state.unreachable
        if region in pair
    }
    return [
        f"worker {worker} cannot reach {region} for {now - since:.0f} s: {why}"
        for worker, region, since, why in sorted(seen)
    ]


def summarize(
    tables: Sequence[str],
    states: Mapping[str, RegionState],
    *,
    now: float,
    stuck_after: float,
) -> list[PairStatus]:
    """One PairStatus per table and ordered pair of distinct regions in ``states``."""
    pairs: list[PairStatus] = []
    for table in tables:
        for source, state in states.items():
            live = [
                r
                for r in state.reports
                if r.table == table and not r.done and now - r.updated_at < REPORT_EXPIRY_S
            ]
            totals = pair_totals(live, now=now)
            for target in states:
                if target == source:
                    continue
                if never_run(state):
                    reason = f"no runner has run in {source} yet: nothing is replicated from it"
                    pairs.append(
                        PairStatus(table, source, target, reasons=(reason,), started=False)
                    )
                    continue
                if state.error is not None:
                    reason = f"cannot read the state in {source}: {state.error}"
                    pairs.append(PairStatus(table, source, target, stuck=True, reasons=(reason,)))
                    continue
                found = [(r, t) for r in live for t in r.targets if t.target == target]
                reasons = _unreachable(states, (source, target), now) + _reasons(
                    found, now=now, stuck_after=stuck_after
                )
                pair = (table, source, target)
                parked = [p for p in state.parked if p.table == table and target in p.targets]
                pairs.append(
                    PairStatus(
                        *pair,
                        totals.get(pair, PairTotals()),
                        stuck=bool(reasons),
                        reasons=tuple(reasons),
                        parked=len(parked),
                    )
                )
    return pairs
