"""repair's guard: which regions may hold data older than the tombstone TTL, and why."""

from __future__ import annotations

from dynamodb_replicator.ops.freshness import PairEvidence, _good_at, refusals
from dynamodb_replicator.runner.reports import ShardReport, TargetReport

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
NOW = 1_000_000.0
TTL = 48 * 3600.0


def fresh(source: str, target: str, age: float = 60.0) -> PairEvidence:
    return PairEvidence(source, target, True, NOW - age)


def all_pairs(age: float = 60.0) -> list[PairEvidence]:
    return [fresh(s, t, age) for s in (US, EU, AP) for t in (US, EU, AP) if s != t]


def test_recent_replication_both_ways_is_safe() -> None:
    assert refusals(all_pairs(), [US, EU, AP], [US, EU, AP], now=NOW, ttl=TTL) == {}


def test_a_pair_into_a_region_older_than_the_ttl_refuses_that_region() -> None:
    pairs = [p for p in all_pairs() if (p.source, p.target) != (US, EU)]
    pairs.append(fresh(US, EU, age=TTL + 3600))
    refused = refusals(pairs, [US, EU, AP], [US, EU, AP], now=NOW, ttl=TTL)
    assert set(refused) == {US, EU}  # out of us-east-1, into eu-west-1
    assert refused[EU] == f"{US} -> {EU} last replicated 49.0 h ago"


def test_never_replicated_and_undated_pairs_refuse() -> None:
    refused = refusals([], [EU], [US, EU], now=NOW, ttl=TTL)
    assert refused == {EU: f"no runner checkpoint for {US} -> {EU} (never replicated) (and 1 more)"}
    undated = [PairEvidence(US, EU, True, None), fresh(EU, US)]
    assert refusals(undated, [EU], [US, EU], now=NOW, ttl=TTL) == {
        EU: f"{US} -> {EU} has checkpoints but no runner report to date them"
    }


def test_only_the_selected_regions_are_judged() -> None:
    pairs = [p for p in all_pairs() if AP not in (p.source, p.target)]
    assert refusals(pairs, [US, EU], [US, EU], now=NOW, ttl=TTL) == {}
    assert set(refusals(pairs, [US, EU], [US, EU, AP], now=NOW, ttl=TTL)) == {US, EU}


def test_a_failing_target_counts_from_when_it_last_advanced() -> None:
    failing = TargetReport(EU, advanced_at=100.0, last_error="down", last_error_at=500.0)
    healthy = TargetReport(AP, advanced_at=100.0)
    shard = ShardReport("T", US, "s", "shard-1", "w", 900.0, False, (failing, healthy))
    assert _good_at(shard, failing) == 100.0
    assert _good_at(shard, healthy) == 900.0
