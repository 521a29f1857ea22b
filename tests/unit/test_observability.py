"""Pure parts of observability: conflict records, lag, counters, the runner's metrics, EMF,
status rules."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamodb_replicator.aws.report_items import report_from_item, report_to_item
from dynamodb_replicator.awslambda.emf import emf_document
from dynamodb_replicator.cli.exits import exit_codes
from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome, overwrote_concurrent
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.lag import batch_ages, timestamp_seconds
from dynamodb_replicator.core.model import ItemKey, Version
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.observe.conflict_log import JsonLinesConflictLog, conflict_record
from dynamodb_replicator.observe.logs import JsonFormatter
from dynamodb_replicator.ops.redrive import newest_per_key
from dynamodb_replicator.ops.status import (
    PairStatus,
    RegionState,
    summarize,
)
from dynamodb_replicator.ops.status_report import render_text, to_json
from dynamodb_replicator.runner.reports import ShardReport, TargetReport, add_counters
from dynamodb_replicator.testing.clock import ManualClock

from .strategies import FIELDS

POLICY = LastWriterWins(FIELDS)
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
KEY_A, KEY_B = '{"pk": {"S": "a"}}', '{"pk": {"S": "b"}}'


def v(stamp: str, origin: str = "us-east-1") -> Version:
    return Version.of(stamp, origin)


def test_overwriting_a_version_the_source_never_saw_is_a_conflict() -> None:
    assert overwrote_concurrent(POLICY, v("5", "eu-west-1"), v("9"), replaced=v("3"))
    assert overwrote_concurrent(POLICY, v("5", "eu-west-1"), v("9"), replaced=None)
    # the version the source replaced, or an older one (a lagging region): no conflict
    assert not overwrote_concurrent(POLICY, v("3"), v("9"), replaced=v("3"))
    assert not overwrote_concurrent(POLICY, v("2"), v("9"), replaced=v("3"))
    assert not overwrote_concurrent(POLICY, None, v("9"), replaced=None)
    assert not overwrote_concurrent(POLICY, v("9"), v("9"), replaced=None)  # a replay


def conflict(**items: object) -> Conflict:
    return Conflict(
        ConflictOutcome.LOST,
        KEY,
        "eu-west-1",
        "put",
        v("3"),
        v("5", "eu-west-1"),
        "42",
        change_item={"pk": {"S": "k"}, "card": {"S": "4111"}},
        other_item={"pk": {"S": "k"}, "card": {"S": "5500"}},
    )


def test_conflict_record_has_key_and_versions_but_values_only_on_request() -> None:
    record = conflict_record(conflict(), table="T", source="us-east-1", at=1.0)
    assert record["key"] == {"pk": {"S": "k"}}
    assert record["change"] == {"timestamp": "3", "origin": "us-east-1"}
    assert record["other"] == {"timestamp": "5", "origin": "eu-west-1"}
    assert record["winner"] == "other" and "4111" not in json.dumps(record)
    full = conflict_record(conflict(), table="T", source="us-east-1", at=1.0, include_items=True)
    assert full["change_item"]["card"] == {"S": "4111"}
    assert full["other_item"]["card"] == {"S": "5500"}


def test_conflict_log_samples_each_conflict_independently() -> None:
    out = io.StringIO()
    draws = iter([0.1, 0.9, 0.2, 0.7])
    log = JsonLinesConflictLog(
        out, sample_rate=0.5, rng=lambda: next(draws), clock=ManualClock(7.0)
    )
    log.record("T", "us-east-1", [conflict()] * 4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["at"] == 7.0 for line in lines)


def test_timestamps_in_ms_or_s_give_a_lag_others_do_not() -> None:
    assert timestamp_seconds("1700000000000") == 1700000000.0
    assert timestamp_seconds("1700000000.5") == 1700000000.5
    assert timestamp_seconds("42") is None and timestamp_seconds("nan") is None
    records: list[dict[str, Any]] = [
        {
            "dynamodb": {
                "NewImage": {FIELDS.timestamp: {"N": "1700000000000"}},
                "ApproximateCreationDateTime": 1700000000.0,
            }
        },
        {  # a replica write (echo): its timestamp is another region's and is skipped
            "dynamodb": {
                "NewImage": {
                    FIELDS.timestamp: {"N": "1600000000000"},
                    FIELDS.marker: {"N": "1600000000000"},
                    FIELDS.origin: {"S": "eu-west-1"},
                },
                "ApproximateCreationDateTime": 1700000001.0,
            }
        },
    ]
    ages = batch_ages(records, 1700000003.0, FIELDS)
    assert ages.timestamp == 3.0 and ages.stream == 2.0


def record_at(stamp: str, created: float) -> dict[str, Any]:
    image = {FIELDS.timestamp: {"N": stamp}}
    return {"dynamodb": {"NewImage": image, "ApproximateCreationDateTime": created}}


def test_a_timestamp_the_stream_time_does_not_confirm_gives_way_to_the_stream_time() -> None:
    now = 1800000000.5
    # an item versioned long ago (version-items --timestamp), replicated now: stream time
    old = batch_ages([record_at("1700000000000", now - 2.5)], now, FIELDS)
    assert old.timestamp == 2.5
    # a clock ahead, or seconds written where milliseconds were meant
    ahead = batch_ages([record_at(str(int((now + 30) * 1000)), now - 2.5)], now, FIELDS)
    assert ahead.timestamp == 2.5
    # no stream time to confirm it: no lag
    assert (
        batch_ages(
            [{"dynamodb": {"NewImage": record_at("1", 0)["dynamodb"]["NewImage"]}}], now, FIELDS
        ).timestamp
        is None
    )


def test_a_confirmed_timestamp_gives_the_lag_its_precision() -> None:
    # AWS: to the second; the stamp lies in that second
    aws = batch_ages([record_at("1800000001250", 1800000001.0)], 1800000001.5, FIELDS)
    assert aws.timestamp == 0.25
    # DynamoDB Local: truncated to the minute (1800000000 is one); 42.1 s into it
    local = batch_ages([record_at("1800000042100", 1800000000.0)], 1800000042.5, FIELDS)
    assert local.timestamp is not None and abs(local.timestamp - 0.4) < 1e-6


def test_emf_document_declares_every_value() -> None:
    document = json.loads(emf_document("NS", {"Table": "T"}, {"Applied": (2, "Count")}, 5))
    assert document["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "NS",
            "Dimensions": [["Table"]],
            "Metrics": [{"Name": "Applied", "Unit": "Count"}],
        }
    ]
    assert document["Applied"] == 2 and document["Table"] == "T"


optional_time = st.none() | st.floats(0, 2e9, allow_nan=False).map(lambda x: round(x, 3))


@given(
    st.builds(
        TargetReport,
        target=st.sampled_from(["us-east-1", "eu-west-1"]),
        counters=st.builds(PairCounters, *[st.integers(0, 10**9)] * 6),
        backlog=st.integers(0, 10**6),
        backlog_more=st.booleans(),
        lag_s=optional_time,
        advanced_at=optional_time,
        last_error=st.none() | st.text(min_size=1, max_size=50),
        last_error_at=optional_time,
    ),
    st.booleans(),
)
def test_shard_reports_survive_the_state_table(target: TargetReport, done: bool) -> None:
    report = ShardReport("T", "us-east-1", "label", "shard-1", "w1", 12.5, done, (target,))
    assert report_from_item(report_to_item(report)) == report


def shard(
    target: TargetReport, *, updated: float = 100.0, done: bool = False, shard_id: str = "s1"
) -> ShardReport:
    return ShardReport("T", "us-east-1", "label", shard_id, "w1", updated, done, (target,))


def one_pair(*reports: ShardReport, now: float = 100.0, error: str | None = None) -> PairStatus:
    states = {
        "us-east-1": RegionState(reports=tuple(reports), error=error),
        "eu-west-1": RegionState(),
    }
    (pair,) = [
        p
        for p in summarize(["T"], states, now=now, stuck_after=30)
        if (p.source, p.target) == ("us-east-1", "eu-west-1")
    ]
    return pair


def test_status_rules() -> None:
    waiting = TargetReport("eu-west-1", backlog=4, advanced_at=50.0)
    healthy = TargetReport("eu-west-1", backlog=0, advanced_at=10.0, lag_s=0.2)
    assert not one_pair(shard(healthy)).stuck  # idle, nothing waits: not stuck
    assert not one_pair(shard(waiting), now=79.0).stuck  # waiting, but moved 29 s ago
    stuck = one_pair(shard(waiting), now=81.0)
    assert (
        stuck.stuck
        and "4 records waiting beyond its checkpoint, no progress for 31 s" in stuck.reasons[0]
    )
    silent = one_pair(shard(healthy, updated=60.0))
    assert silent.stuck and "no report for 40 s" in silent.reasons[0]
    finished = shard(waiting, updated=0.0, done=True, shard_id="s0")
    assert not one_pair(finished, shard(healthy)).stuck  # a finished parent counts no more
    assert not one_pair().stuck and not one_pair().started  # no runner ever ran there
    unreadable = one_pair(error="could not connect")
    assert unreadable.stuck and "could not connect" in unreadable.reasons[0]


def test_a_region_no_runner_has_run_in_is_not_started_not_stuck() -> None:
    healthy = TargetReport("us-east-1", backlog=0, advanced_at=90.0)
    states = {
        "us-east-1": RegionState(absent=True, error="no state table S in us-east-1"),
        "eu-west-1": RegionState(
            reports=(ShardReport("T", "eu-west-1", "l", "s1", "w1", 99.0, False, (healthy,)),),
            workers=("w1",),
        ),
        "ap-south-1": RegionState(),  # a state table, but no runner ever wrote to it
    }
    pairs = {(p.source, p.target): p for p in summarize(["T"], states, now=100.0, stuck_after=30)}
    for source in ("us-east-1", "ap-south-1"):
        pair = pairs[(source, "eu-west-1")]
        assert not pair.stuck and not pair.started
        assert pair.reasons == (
            f"no runner has run in {source} yet: nothing is replicated from it",
        )
    assert pairs[("eu-west-1", "us-east-1")].started
    text = render_text(list(pairs.values()), states, now=100.0)
    assert "stuck: T us-east-1" not in text and "stuck: T ap-south-1" not in text
    assert "NOT STARTED" in text
    assert "not started: T us-east-1 -> eu-west-1: no runner has run in us-east-1 yet" in text
    assert "us-east-1: no state table: no runner has run there yet" in text
    assert to_json(list(pairs.values()), states, now=100.0)["not_started"] == [
        "ap-south-1",
        "us-east-1",
    ]
    # a live worker that has not reported on the table yet: that is a runner, and stuck
    busy = {"us-east-1": RegionState(workers=("w1",)), "eu-west-1": states["eu-west-1"]}
    (stuck,) = [
        p for p in summarize(["T"], busy, now=100.0, stuck_after=30) if p.target == "eu-west-1"
    ]
    assert stuck.stuck and stuck.started
    assert "NOT STARTED" in exit_codes("status")[3]  # documented (docs/reference/commands.md)


def test_status_drops_an_error_the_target_advanced_past() -> None:
    failing = TargetReport("eu-west-1", advanced_at=50.0, last_error="boom", last_error_at=60.0)
    assert one_pair(shard(failing)).totals.last_error == "boom"
    # applied or parked since: the target moved on after the error
    resolved = TargetReport("eu-west-1", advanced_at=70.0, last_error="boom", last_error_at=60.0)
    assert one_pair(shard(resolved)).totals.last_error is None


def test_status_text_shows_stuck_pairs_and_owners() -> None:
    states = {
        "us-east-1": RegionState(
            reports=(
                shard(TargetReport("eu-west-1", backlog=4, backlog_more=True, advanced_at=0.0)),
            ),
            workers=("w1",),
        ),
        "eu-west-1": RegionState(error="timeout"),
    }
    pairs = summarize(["T"], states, now=100.0, stuck_after=30)
    text = render_text(pairs, states, now=100.0)
    assert "4+" in text and "STUCK" in text and "us-east-1: workers w1" in text
    assert "cannot read the state in eu-west-1: timeout" in text
    assert "eu-west-1: state unreadable" in text


def test_retired_shards_keep_adding_to_the_counters() -> None:
    first = shard(TargetReport("eu-west-1", PairCounters(applied=3, stale=1), backlog=9, lag_s=1.0))
    second = ShardReport(
        "T",
        "us-east-1",
        "label",
        "s2",
        "w1",
        200.0,
        True,
        (
            TargetReport("eu-west-1", PairCounters(applied=4), lag_s=0.5),
            TargetReport("ap-southeast-1", PairCounters(won=2)),
        ),
    )
    total = add_counters(first, second)
    by_target = {t.target: t for t in total.targets}
    assert by_target["eu-west-1"].counters == PairCounters(applied=7, stale=1)
    assert by_target["eu-west-1"].lag_s == 0.5  # gauges: the latest report's
    assert by_target["ap-southeast-1"].counters.won == 2


def test_status_json_keeps_one_flat_object_per_pair() -> None:
    target = TargetReport(
        "eu-west-1",
        PairCounters(applied=2, lost=1),
        lag_s=0.5,
        backlog=3,
        advanced_at=90.0,
        last_error="boom",
        last_error_at=95.0,
    )
    states = {"us-east-1": RegionState(reports=(shard(target),)), "eu-west-1": RegionState()}
    pairs = summarize(["T"], states, now=100.0, stuck_after=30)
    (us_eu,) = [p for p in to_json(pairs, states, now=100.0)["pairs"] if p["source"] == "us-east-1"]
    assert us_eu == {
        "table": "T",
        "source": "us-east-1",
        "target": "eu-west-1",
        "shards": 1,
        "idle": False,
        "lag_s": 0.5,
        "stream_age_s": None,
        "backlog": 3,
        "backlog_more": False,
        "stalled_s": 10.0,
        "applied": 2,
        "stale": 0,
        "failed": 0,
        "retried": 0,
        "lost": 1,
        "won": 0,
        "parked": 0,
        "refused": 0,
        "removed": 0,
        "last_error": "boom",
        "last_error_age_s": 5.0,
        "stuck": False,
        "started": True,
        "reasons": [],
        "parked_waiting": 0,
    }


def test_a_stored_report_without_some_counters_reads_them_as_zero() -> None:
    target = TargetReport("eu-west-1", PairCounters(applied=3, retried=2, won=1))
    item = report_to_item(shard(target))
    assert item["t#eu-west-1"]["M"]["applied"] == {"N": "3"}  # one number per counter
    del item["t#eu-west-1"]["M"]["retried"], item["t#eu-west-1"]["M"]["won"]  # an older writer
    (read,) = report_from_item(item).targets
    assert read.counters == PairCounters(applied=3)


def test_status_names_parked_records_and_idle_pairs() -> None:
    parked = ParkedRecord(
        "T", "us-east-1", "label", "s1", "00042", '{"pk": {"S": "a"}}', ("eu-west-1",),
        "no __timestamp", 40.0, {},
    )  # fmt: skip
    idle = TargetReport("eu-west-1", backlog=0, advanced_at=10.0, lag_s=3.0)
    states = {
        "us-east-1": RegionState(reports=(shard(idle),), parked=(parked,)),
        "eu-west-1": RegionState(),
    }
    pairs = summarize(["T"], states, now=100.0, stuck_after=30)
    (us_eu,) = [p for p in pairs if p.source == "us-east-1"]
    assert us_eu.parked == 1 and not us_eu.stuck
    text = render_text(pairs, states, now=100.0)
    assert "PARKED" in text and "idle" in text and "3.0 s" not in text  # no frozen lag
    assert 'key {"pk": {"S": "a"}}' in text and "redrive" in text
    (listed,) = to_json(pairs, states, now=100.0)["parked"]
    assert listed["key"] == {"pk": {"S": "a"}} and listed["age_s"] == 60.0


def test_redrive_takes_the_newest_parked_record_of_each_key() -> None:
    def parked(sequence: str, key: str) -> ParkedRecord:
        return ParkedRecord(
            "T", "us-east-1", "label", "s1", sequence, key, ("eu-west-1",), "too large", 1.0, {}
        )

    old, new = parked("99999", KEY_A), parked("100000", KEY_A)
    other, keyless = parked("5", KEY_B), parked("7", "")
    chosen = newest_per_key([old, other, new, keyless])
    # numeric order, not text order: 100000 is newer than 99999
    assert chosen == [(new, (old,)), (other, ()), (keyless, ())]


def test_json_log_lines_carry_their_time_to_the_millisecond() -> None:
    record = logging.LogRecord("runner", logging.INFO, __file__, 1, "runner started", None, None)
    record.created = 1_796_217_293.6437  # 2026-12-02T13:14:53.6437Z
    line = json.loads(JsonFormatter().format(record))
    assert line["time"] == "2026-12-02T13:14:53.643Z"
    parsed = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert parsed.timestamp() == pytest.approx(record.created, abs=0.001)
