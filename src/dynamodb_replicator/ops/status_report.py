"""``status``'s report of the pairs ``ops.status.summarize`` found: a table and notes for
people (``render_text``), or one JSON document for scripts (``to_json``). Pure: ``now`` is
passed in."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.ops.status import PairStatus, RegionState

__all__ = ["render_text", "to_json"]


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
    """The pairs, parked records and regions as one JSON document."""
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
    """The pairs as a table, then why each is stuck or not started, the parked records,
    residency's counts and each region's workers and leases."""
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
