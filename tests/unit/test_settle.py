"""Settling a diff: in flight, diverged, changed by new writes, and the bound."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console

from dynamodb_replicator.aws.positions import Mark, passed
from dynamodb_replicator.cli.diff import print_settle
from dynamodb_replicator.core.streams import END, ShardRef
from dynamodb_replicator.ops.diff import Row
from dynamodb_replicator.ops.settle import (
    IDLE_GRACE_SECONDS,
    QUIET_SECONDS,
    Seen,
    SettleReport,
    settle,
)

A = Row("k", "a", "1", "us-east-1")
B = Row("k", "b", "2", "us-east-1")
C = Row("k", "c", "3", "eu-west-1")


def seen(first: Row | None, second: Row | None) -> Seen:
    """One key as the two regions hold it."""
    return (("us-east-1", first), ("eu-west-1", second))


SHARD = ShardRef("T", "arn:aws:dynamodb:us-east-1:1:table/T/stream/s1", "shard-1")
MARK = Mark("us-east-1", SHARD, "100", ("eu-west-1",))


@dataclass
class FakeClock:
    now: float = 0.0
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@dataclass
class ScriptedReader:
    """Each read answers with the next state of every key (the last one repeats)."""

    script: list[dict[str, Seen]]
    reads: list[list[str]] = field(default_factory=list)

    def read(self, keys: Sequence[str]) -> dict[str, Seen]:
        self.reads.append(list(keys))
        state = self.script[min(len(self.reads) - 1, len(self.script) - 1)]
        return {key: state[key] for key in keys}


@dataclass
class FakeTracker:
    """Checkpoints pass each mark after ``lag`` polls; never when ``lag`` is None."""

    lag: int | None
    polls: int = 0
    marks: int = 0

    def mark(self) -> Sequence[Mark]:
        self.marks += 1
        self.polls = 0
        return [MARK]

    def behind(self, marks: Sequence[Mark]) -> Sequence[Mark]:
        self.polls += 1
        return list(marks) if self.lag is None or self.polls <= self.lag else []


def test_a_key_that_agrees_after_the_checkpoints_pass_was_in_flight() -> None:
    clock = FakeClock()
    reader = ScriptedReader([{"k": seen(A, B)}, {"k": seen(B, B)}])
    report = settle(["k"], reader, FakeTracker(lag=2), timeout=60, clock=clock, wait=clock.wait)
    assert (report.in_flight, report.diverged, report.unsettled) == (1, [], [])
    assert report.clean and report.method == "checkpoints"
    # a moment for the stream to show what was read, then polls until the checkpoints pass
    assert clock.waits == [1.0, 0.5, 0.5]


def test_a_key_unchanged_after_two_rounds_of_passed_checkpoints_diverged() -> None:
    clock = FakeClock()
    reader = ScriptedReader(
        [{"k": seen(A, B), "j": seen(A, None)}, {"k": seen(A, B), "j": seen(A, A)}]
    )
    tracker = FakeTracker(lag=0)
    report = settle(["k", "j"], reader, tracker, timeout=60, clock=clock, wait=clock.wait)
    assert report.diverged == ["k"] and report.in_flight == 1 and not report.clean
    assert tracker.marks == 2  # confirmed by a second round
    assert report.as_json()["diverged"] == 1 and report.as_json()["samples"]["diverged"] == ["k"]


def test_a_key_changed_by_new_writes_goes_another_round() -> None:
    clock = FakeClock()
    reader = ScriptedReader([{"k": seen(A, B)}, {"k": seen(B, C)}, {"k": seen(C, C)}])
    tracker = FakeTracker(lag=0)
    report = settle(["k"], reader, tracker, timeout=60, clock=clock, wait=clock.wait)
    assert (report.in_flight, report.diverged) == (1, [])
    assert tracker.marks == 2  # a second mark, after the changed read


def test_keys_agreeing_at_once_need_no_wait() -> None:
    tracker = FakeTracker(lag=None)
    report = settle(["k"], ScriptedReader([{"k": seen(A, A)}]), tracker, timeout=60)
    assert report.in_flight == 1 and tracker.marks == 0


def test_checkpoints_that_never_pass_time_out_with_the_reason() -> None:
    clock = FakeClock()
    reader = ScriptedReader([{"k": seen(A, B)}])
    report = settle(["k"], reader, FakeTracker(lag=None), timeout=5, clock=clock, wait=clock.wait)
    assert report.unsettled == ["k"] and report.diverged == [] and not report.clean
    assert report.reason is not None and "us-east-1 -> eu-west-1" in report.reason
    assert "is a runner running" in report.reason
    assert report.as_json()["timed_out"] is True
    assert clock.now == 5  # bounded: it waited exactly up to the timeout


def test_without_checkpoints_keys_are_read_until_they_agree_or_time_runs_out() -> None:
    clock = FakeClock()
    reader = ScriptedReader(
        [{"k": seen(A, B), "j": seen(A, B)}, {"k": seen(B, B), "j": seen(A, B)}]
    )
    report = settle(["k", "j"], reader, None, timeout=3, clock=clock, wait=clock.wait)
    assert report.method == "reread"
    assert report.in_flight == 1 and report.unsettled == ["j"] and report.diverged == []
    assert report.reason is not None and "no runner checkpoints" in report.reason


def test_a_checkpoint_passes_a_mark_at_or_after_it_or_at_the_shard_end() -> None:
    assert passed("100", "100") and passed("101", "100") and passed(END, "100")
    assert not passed("99", "100") and not passed(None, "100")
    assert passed("1000", "999")  # numbers, not text


def test_the_text_claims_no_divergence_that_re_reading_cannot_prove() -> None:
    text = io.StringIO()
    reread = SettleReport("reread", unsettled=["k", "j"], reason="time ran out", seconds=5.0)
    print_settle(Console(file=text, width=200), reread)
    line = text.getvalue().splitlines()[0]
    assert line.endswith(
        "0 in flight (agree once replication caught up), 2 unsettled (diverged or lagging)"
    ), line
    text = io.StringIO()
    print_settle(Console(file=text, width=200), SettleReport("checkpoints", diverged=["k"]))
    assert "1 diverged" in text.getvalue() and "unsettled" not in text.getvalue()


def test_re_reading_keys_nothing_changes_stops_early_and_says_why() -> None:
    clock = FakeClock()
    reader = ScriptedReader([{"k": seen(A, B)}])
    report = settle(["k"], reader, None, timeout=60, clock=clock, wait=clock.wait)
    assert report.unsettled == ["k"] and report.early and not report.clean
    assert clock.now == QUIET_SECONDS  # not the whole 60 s
    assert report.reason is not None and "replication is not running" in report.reason
    assert report.as_json()["stopped_early"] is True and report.as_json()["timed_out"] is False
    text = io.StringIO()
    print_settle(Console(file=text, width=200), report)
    assert "settle stopped early: 1 keys still differed and none changed in 15 s" in (
        text.getvalue()
    )


def test_re_reading_keys_that_keep_changing_waits_up_to_the_timeout() -> None:
    clock = FakeClock()
    moving: list[dict[str, Seen]] = [
        {"k": seen(A, B)},
        {"k": seen(A, C)},
    ] * 200  # new writes, never agreeing
    report = settle(["k"], ScriptedReader(moving), None, timeout=30, clock=clock, wait=clock.wait)
    assert report.unsettled == ["k"] and not report.early and clock.now == 30


def test_marks_no_runner_holds_stop_the_wait_at_once_with_the_reason() -> None:
    clock = FakeClock()
    asked: list[Sequence[Mark]] = []

    def idle(behind: Sequence[Mark]) -> str | None:
        asked.append(behind)
        return "no runner holds a lease on T's shards in us-east-1"

    report = settle(
        ["k"],
        ScriptedReader([{"k": seen(A, B)}]),
        FakeTracker(lag=None),
        timeout=60,
        clock=clock,
        wait=clock.wait,
        idle=idle,
    )
    assert report.early and report.unsettled == ["k"] and asked[0] == [MARK]
    assert report.reason == "no runner holds a lease on T's shards in us-east-1"
    # the stream moment, then a grace for a lease takeover: not polling to the timeout
    assert clock.now == 1.0 + IDLE_GRACE_SECONDS


def test_a_lease_taken_over_within_the_grace_keeps_the_wait_going() -> None:
    clock = FakeClock()
    answers = iter(["no runner holds a lease"] * 10 + [None] * 1000)
    report = settle(
        ["k"],
        ScriptedReader([{"k": seen(A, B)}, {"k": seen(B, B)}]),
        FakeTracker(lag=30),
        timeout=60,
        clock=clock,
        wait=clock.wait,
        idle=lambda behind: next(answers),
    )
    assert report.in_flight == 1 and not report.early


def test_marks_a_runner_holds_are_waited_for() -> None:
    clock = FakeClock()
    report = settle(
        ["k"],
        ScriptedReader([{"k": seen(A, B)}, {"k": seen(B, B)}]),
        FakeTracker(lag=2),
        timeout=60,
        clock=clock,
        wait=clock.wait,
        idle=lambda behind: None,
    )
    assert report.in_flight == 1 and not report.early
