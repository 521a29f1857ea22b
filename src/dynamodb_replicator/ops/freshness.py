"""Is ``repair`` safe? Not when a region may hold data older than the tombstone TTL.

Repair puts each key's winner among every region's items and remembered deletes. A delete is
remembered for the tombstone TTL only: a region cut off from replication for longer still
holds items deleted elsewhere whose tombstones have expired, and repair would copy them back
everywhere (and a delete made in that region, its tombstone expired, would be undone by the
others' copies). So before repairing, each region's replication must be known to be recent,
in both directions: the runner's shard reports (``stats|`` items in each source region's
state table, ``aws/report_items.py``) must show every (source, target) pair into and out of
the region replicating within the TTL. A pair with no checkpoint at all was never
replicated; one with checkpoints but no report cannot be dated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.report_items import PREFIX, report_from_item
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.tables import describe_table
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.reports import ShardReport, TargetReport

__all__ = ["PairEvidence", "RepairRefusedError", "check_fresh", "evidence", "refusals"]


class RepairRefusedError(ReplicatorError):
    """Repair could resurrect deletes: two lines, why and what to do."""


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """What the state tables tell about replication from ``source`` to ``target``."""

    source: str
    target: str
    checkpointed: bool  # some checkpoint of the table holds a position for the target
    last_seen: float | None  # epoch seconds: the newest report of it replicating


def _good_at(shard: ShardReport, target: TargetReport) -> float | None:
    """When the report shows the target last known healthy: the report's time, unless the
    target has failed since it last advanced (then the time it last advanced)."""
    failing = target.last_error_at is not None and (
        target.advanced_at is None or target.last_error_at > target.advanced_at
    )
    return target.advanced_at if failing else shard.updated_at


def _last_seen(state: DynamoStateStore, table: str) -> dict[str, float]:
    """Target -> the newest time a shard report shows it healthy."""
    seen: dict[str, float] = {}
    for item in state.scan(f"{PREFIX}{table}|"):
        shard = report_from_item(item)
        for report in shard.targets:
            at = _good_at(shard, report)
            if at is not None:
                seen[report.target] = max(seen.get(report.target, at), at)
    return seen


def evidence(table: str, state_table: str, sources: Sequence[RegionSpec]) -> list[PairEvidence]:
    """Every (source, target) pair the state tables of ``sources`` know of for ``table``."""
    found: list[PairEvidence] = []
    for spec in sources:
        client = make_client("dynamodb", spec)
        if describe_table(client, state_table, spec.name) is None:
            continue
        state = DynamoStateStore(client, state_table, spec.name)
        checkpointed = {
            name.split("#", 1)[1]
            for item in state.checkpoint_items(table)
            for name in item
            if name.startswith("pos#")
        }
        seen = _last_seen(state, table)
        for name in sorted((checkpointed | set(seen)) - {spec.name}):
            found.append(PairEvidence(spec.name, name, name in checkpointed, seen.get(name)))
    return found


def _why(pair: PairEvidence | None, source: str, target: str, now: float) -> str:
    if pair is None or not (pair.checkpointed or pair.last_seen is not None):
        return f"no runner checkpoint for {source} -> {target} (never replicated)"
    if pair.last_seen is None:
        return f"{source} -> {target} has checkpoints but no runner report to date them"
    hours = (now - pair.last_seen) / 3600
    return f"{source} -> {target} last replicated {hours:.1f} h ago"


def refusals(
    pairs: Iterable[PairEvidence],
    regions: Sequence[str],
    every_region: Sequence[str],
    *,
    now: float,
    ttl: float,
) -> dict[str, str]:
    """Region -> why it may hold data older than ``ttl``, for each of ``regions`` at risk
    (pairs into and out of it, from and to ``every_region``)."""
    known: Mapping[tuple[str, str], PairEvidence] = {(p.source, p.target): p for p in pairs}
    refused: dict[str, str] = {}
    for region in regions:
        reasons = []
        for other in every_region:
            if other == region:
                continue
            for source, target in ((other, region), (region, other)):
                pair = known.get((source, target))
                if pair is None or pair.last_seen is None or now - pair.last_seen > ttl:
                    reasons.append(_why(pair, source, target, now))
        if reasons:
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            refused[region] = reasons[0] + more
    return refused


def check_fresh(
    table: str,
    *,
    regions: Sequence[RegionSpec],
    every_region: Sequence[RegionSpec],
    state_table: str,
    ttl: float,
    now: float,
) -> None:
    """Raise RepairRefusedError when a region of ``regions`` may hold data older than
    ``ttl``."""
    pairs = evidence(table, state_table, every_region)
    refused = refusals(
        pairs, [r.name for r in regions], [r.name for r in every_region], now=now, ttl=ttl
    )
    if not refused:
        return
    why = "; ".join(f"{region} ({reason})" for region, reason in refused.items())
    raise RepairRefusedError(
        f"repair refused for {table}: may hold data older than the tombstone TTL "
        f"({ttl / 3600:g} h), so repair could bring back deleted items: {why}\n"
        "what to do: rebuild such a region from a healthy one (remove it from the config, "
        "delete its table, `add-region --region NAME --from HEALTHY`), or, if you know it "
        "was never cut off that long (e.g. replication runs on Lambda), repair with --force"
    )
