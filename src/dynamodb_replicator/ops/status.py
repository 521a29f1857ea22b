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
any does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.runner.reports import PairTotals, ShardReport, TargetReport, pair_totals

__all__ = [
    "REPORT_EXPIRY_S",
    "Lease",
    "PairStatus",
    "RegionState",
    "never_run",
    "render_text",
    "summarize",
    "to_json",
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


def _pair_json(pair: PairStatus, now: float) -> dict[str, Any]:
    totals = pair.totals
    error_at = totals.last_error_at
    return {
        "table": pair.table,
        "source": pair.source,
        "target": pair.target,
        "shards": totals.shards,
        "idle": totals.idle and totals.shards > 0,
        "lag_s": totals.lag_s,
        "stream_age_s": totals.stream_age_s,
        "backlog": totals.backlog,
        "backlog_more": totals.backlog_more,
        "stalled_s": totals.stalled_s,
        **asdict(totals.counters),
        "last_error": totals.last_error,
        "last_error_age_s": None if error_at is None else now - error_at,
        "stuck": pair.stuck,
        "started": pair.started,
        "reasons": list(pair.reasons),
        "parked_waiting": pair.parked,
    }


def _parked_json(parked: ParkedRecord, now: float) -> dict[str, Any]:
    return {
        "table": parked.table,
        "source": parked.source,
        "targets": list(parked.targets),
        "shard": parked.shard_id,
        "sequence": parked.sequence,
        "key": json.loads(parked.key) if parked.key else None,
        "reason": parked.reason,
        "age_s": round(now - parked.parked_at, 1),
    }


def to_json(
    pairs: Sequence[PairStatus], states: Mapping[str, RegionState], *, now: float
) -> dict[str, Any]:
    return {
        "at": round(now, 3),
        "stuck": any(p.stuck for p in pairs),
        "not_started": sorted({p.source for p in pairs if not p.started}),
        "pairs": [_pair_json(p, now) for p in pairs],
        "parked": [_parked_json(p, now) for s in states.values() for p in s.parked],
        "regions": {
            name: {
                "error": state.error,
                "workers": list(state.workers),
                "unreachable": [
                    {"worker": worker, "region": region, "since": since, "reason": why}
                    for worker, region, since, why in state.unreachable
                ],
                "leases": [
                    {
                        "shard": lease.shard,
                        "owner": lease.owner,
                        "expires_in_s": round(lease.expires_at - now, 1),
                    }
                    for lease in state.leases
                ],
            }
            for name, state in states.items()
        },
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def render_text(
    pairs: Sequence[PairStatus], states: Mapping[str, RegionState], *, now: float
) -> str:
    header = ("TABLE", "SOURCE", "TARGET", "LAG", "STREAM AGE", "BACKLOG", "STALLED", "STATE")
    rows = [header]
    for p in pairs:
        t = p.totals
        backlog = f"{t.backlog}{'+' if t.backlog_more else ''}" if t.shards else "-"
        state = (
            "STUCK"
            if p.stuck
            else "NOT STARTED"
            if not p.started
            else "PARKED"
            if p.parked
            else "ok"
        )
        idle = t.idle and t.shards > 0
        rows.append(
            (
                p.table,
                p.source,
                p.target,
                "idle" if idle else _seconds(t.lag_s),
                "idle" if idle else _seconds(t.stream_age_s),
                backlog,
                _seconds(t.stalled_s),
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for p in pairs:
        label = "stuck" if p.started else "not started"
        for reason in p.reasons:
            lines.append(f"{label}: {p.table} {p.source} -> {p.target}: {reason}")
        error_at = p.totals.last_error_at
        if p.totals.last_error is not None and error_at is not None:
            lines.append(
                f"last error: {p.table} {p.source} -> {p.target} "
                f"({_seconds(now - error_at)} ago): {p.totals.last_error}"
            )
    lines.extend(_parked_lines(states, now))
    lines.extend(_residency_lines(pairs))
    for name, region in states.items():
        if region.absent:
            lines.append(f"{name}: no state table: no runner has run there yet")
            continue
        if region.error is not None:
            lines.append(f"{name}: state unreadable")
            continue
        lines.append(f"{name}: workers {', '.join(region.workers) or 'none'}")
        for lease in region.leases:
            left = lease.expires_at - now
            held = f"{left:.0f} s left" if left >= 0 else f"expired {-left:.0f} s ago"
            lines.append(f"  {lease.shard}  owner {lease.owner} ({held})")
    return "\n".join(line.rstrip() for line in lines)


def _residency_lines(pairs: Sequence[PairStatus]) -> list[str]:
    """Per pair, the items residency kept out of the target or removed from the source."""
    return [
        f"residency: {p.table} {p.source} -> {p.target}: {c.refused} refused "
        f"(a delete went instead), {c.removed} removed (written outside their scope)"
        for p in pairs
        for c in [p.totals.counters]
        if c.refused or c.removed
    ]


def _parked_lines(states: Mapping[str, RegionState], now: float) -> list[str]:
    parked = [p for state in states.values() for p in state.parked]
    lines = [
        f"parked: {p.table} {p.source} -> {', '.join(p.targets)} key {p.key or '?'} "
        f"(sequence {p.sequence}, {_seconds(now - p.parked_at)} ago): {p.reason}"
        for p in parked
    ]
    if parked:
        lines.append(
            f"{len(parked)} parked record(s) wait: fix each item in its source region, "
            "then run `dynamodb-replicator redrive --config FILE`"
        )
    return lines
