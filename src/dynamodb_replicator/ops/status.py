"""``status``: the health of every (table, source, target) pair, from the runners' shard
reports and leases in each source region's state table. Pure: ``now`` is passed in.

A pair is **stuck** when records wait for it and it has not advanced for ``stuck_after``
seconds, when no runner has reported on a shard for that long, or when its source region's
state cannot be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dynamodb_replicator.runner.reports import ShardReport, TargetReport

__all__ = ["Lease", "PairStatus", "RegionState", "render_text", "summarize", "to_json"]

RETENTION_S = 2 * 24 * 3600  # a report older than the stream's retention is of a gone shard


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
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PairStatus:
    table: str
    source: str
    target: str
    shards: int = 0
    lag_s: float | None = None
    stream_age_s: float | None = None
    backlog: int = 0
    backlog_more: bool = False
    stalled_s: float | None = None  # since a shard with a backlog last advanced
    applied: int = 0
    stale: int = 0
    failed: int = 0
    lost: int = 0
    won: int = 0
    last_error: str | None = None
    last_error_age_s: float | None = None
    stuck: bool = False
    reasons: tuple[str, ...] = field(default=())


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _pair(
    status: PairStatus,
    reports: Sequence[tuple[ShardReport, TargetReport]],
    *,
    now: float,
    stuck_after: float,
) -> PairStatus:
    reasons: list[str] = []
    values: dict[str, Any] = asdict(status)
    for report, target_report in reports:
        silent = now - report.updated_at
        if silent > stuck_after:
            reasons.append(
                f"shard {report.shard_id}: no report for {silent:.0f} s (no live runner holds it)"
            )
        for name in ("applied", "stale", "failed", "lost", "won", "backlog"):
            values[name] += getattr(target_report, name)
        values["backlog_more"] |= target_report.backlog_more
        values["lag_s"] = _max(values["lag_s"], target_report.lag_s)
        values["stream_age_s"] = _max(values["stream_age_s"], target_report.stream_age_s)
        if target_report.backlog and target_report.advanced_at is not None:
            stalled = now - target_report.advanced_at
            values["stalled_s"] = _max(values["stalled_s"], stalled)
            if stalled > stuck_after:
                reasons.append(
                    f"shard {report.shard_id}: {target_report.backlog} records waiting, "
                    f"no progress for {stalled:.0f} s"
                )
        error_at = target_report.last_error_at
        if target_report.last_error and error_at is not None:
            age = now - error_at
            if values["last_error_age_s"] is None or age < values["last_error_age_s"]:
                values["last_error"], values["last_error_age_s"] = target_report.last_error, age
    if not reports:
        reasons.append("no runner has reported on this table's shards")
    values.update(stuck=bool(reasons), reasons=tuple(reasons))
    return PairStatus(**values)


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
                if r.table == table and not r.done and now - r.updated_at < RETENTION_S
            ]
            for target in states:
                if target == source:
                    continue
                if state.error is not None:
                    reason = f"cannot read the state in {source}: {state.error}"
                    pairs.append(PairStatus(table, source, target, stuck=True, reasons=(reason,)))
                    continue
                found = [(r, t) for r in live for t in r.targets if t.target == target]
                empty = PairStatus(table, source, target, shards=len(found))
                pairs.append(_pair(empty, found, now=now, stuck_after=stuck_after))
    return pairs


def to_json(
    pairs: Sequence[PairStatus], states: Mapping[str, RegionState], *, now: float
) -> dict[str, Any]:
    return {
        "at": round(now, 3),
        "stuck": any(p.stuck for p in pairs),
        "pairs": [asdict(p) for p in pairs],
        "regions": {
            name: {
                "error": state.error,
                "workers": list(state.workers),
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
        backlog = f"{p.backlog}{'+' if p.backlog_more else ''}" if p.shards else "-"
        state = "STUCK" if p.stuck else "ok"
        rows.append(
            (
                p.table,
                p.source,
                p.target,
                _seconds(p.lag_s),
                _seconds(p.stream_age_s),
                backlog,
                _seconds(p.stalled_s),
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    for p in pairs:
        for reason in p.reasons:
            lines.append(f"stuck: {p.table} {p.source} -> {p.target}: {reason}")
        if p.last_error is not None:
            lines.append(
                f"last error: {p.table} {p.source} -> {p.target} "
                f"({_seconds(p.last_error_age_s)} ago): {p.last_error}"
            )
    for name, region in states.items():
        if region.error is not None:
            lines.append(f"{name}: state unreadable")
            continue
        lines.append(f"{name}: workers {', '.join(region.workers) or 'none'}")
        for lease in region.leases:
            left = lease.expires_at - now
            held = f"{left:.0f} s left" if left >= 0 else f"expired {-left:.0f} s ago"
            lines.append(f"  {lease.shard}  owner {lease.owner} ({held})")
    return "\n".join(line.rstrip() for line in lines)
