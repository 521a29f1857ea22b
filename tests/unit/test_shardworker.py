"""The per-shard lifecycle against a fake stream (shards never split on DynamoDB Local)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import MissingTimestampError, UnreachableError
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.parking import ParkedRecord
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult, RecordFailure
from dynamodb_replicator.core.streams import (
    END,
    ExpiredIteratorError,
    Page,
    ShardRef,
    TrimmedDataError,
)
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

ARN = "arn:aws:dynamodb:eu-west-1:1:table/Orders/stream/label"
TARGETS = ["eu-west-1", "us-east-1", "ap-southeast-1"]


def record(seq: int) -> dict[str, Any]:
    return {"dynamodb": {"SequenceNumber": f"{seq:021d}"}}


@dataclass
class FakeStream:
    shards: dict[str, list[dict[str, Any]]]
    closed: set[str] = field(default_factory=set)
    expire_next: int = 0
    trim_next: int = 0
    iterators_taken: list[tuple[str, str | None]] = field(default_factory=list)

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        self.iterators_taken.append((shard_id, after))
        records = self.shards[shard_id]
        index = (
            0
            if after is None
            else sum(1 for r in records if int(r["dynamodb"]["SequenceNumber"]) <= int(after))
        )
        return f"{shard_id}:{index}"

    def read(self, iterator: str, limit: int = 1000) -> Page:
        if self.expire_next:
            self.expire_next -= 1
            raise ExpiredIteratorError("expired")
        if self.trim_next:
            self.trim_next -= 1
            raise TrimmedDataError("trimmed")
        shard_id, index = iterator.split(":")
        records = self.shards[shard_id][int(index) : int(index) + limit]
        end = int(index) + len(records)
        done = shard_id in self.closed and end >= len(self.shards[shard_id])
        return Page(records, None if done else f"{shard_id}:{end}")


@dataclass
class FakeCheckpoints:
    saved: dict[ShardRef, dict[str, str]] = field(default_factory=dict)

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved.get(shard, {}))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        self.saved.setdefault(shard, {}).update(positions)


@dataclass
class FakeTargets:
    """Applies records; a target in ``down`` fails from ``fail_at`` (a sequence) onwards."""

    down: dict[str, int] = field(default_factory=dict)
    applied: dict[str, list[int]] = field(default_factory=dict)

    def __call__(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        results = {}
        for target in targets:
            failed = None
            for r in records:
                seq = int(r["dynamodb"]["SequenceNumber"])
                if target in self.down and seq >= self.down[target]:
                    failed = failed or r["dynamodb"]["SequenceNumber"]
                    continue
                self.applied.setdefault(target, []).append(seq)
            error = UnreachableError("down") if failed else None
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        return BatchResult(results)


def worker(
    stream: FakeStream,
    checkpoints: FakeCheckpoints,
    targets: FakeTargets,
    clock: ManualClock,
    shard: str = "s1",
    parent: str | None = None,
    limit: int = 3,
) -> ShardWorker:
    return ShardWorker(
        ShardRef("Orders", ARN, shard),
        source=stream,
        checkpoints=checkpoints,
        process=targets,
        targets=TARGETS,
        parent=ShardRef("Orders", ARN, parent) if parent else None,
        clock=clock,
        page_limit=limit,
    )


def run_until_idle(w: ShardWorker, clock: ManualClock, steps: int = 50) -> None:
    for _ in range(steps):
        clock.t += 60  # past any backoff
        w.step()


def test_reads_every_record_once_and_checkpoints_each_target() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 8)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    w = worker(stream, checkpoints, targets, clock)
    run_until_idle(w, clock)
    for target in TARGETS:
        assert targets.applied[target] == list(range(1, 8))
    assert set(checkpoints.saved[w.shard].values()) == {f"{7:021d}"}
    assert len(w.cursors) == 1


def test_a_down_target_holds_back_only_itself_and_catches_up() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 8)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    targets = FakeTargets(down={"ap-southeast-1": 3})
    w = worker(stream, checkpoints, targets, clock)
    run_until_idle(w, clock)
    saved = checkpoints.saved[w.shard]
    assert saved["us-east-1"] == saved["eu-west-1"] == f"{7:021d}"
    assert saved["ap-southeast-1"] == f"{2:021d}"  # the last record it accepted
    assert len(w.cursors) == 2
    targets.down.clear()  # the region is back
    run_until_idle(w, clock)
    assert targets.applied["ap-southeast-1"] == list(range(1, 8))
    assert checkpoints.saved[w.shard]["ap-southeast-1"] == f"{7:021d}"
    assert len(w.cursors) == 1  # merged: the shard is read once again


def test_a_failing_target_waits_for_its_backoff() -> None:
    stream = FakeStream({"s1": [record(1)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    targets = FakeTargets(down={"ap-southeast-1": 1})
    w = worker(stream, checkpoints, targets, clock)
    w.step()
    taken = len(stream.iterators_taken)
    w.step()  # same instant: the paused cursor is not retried yet
    assert len(stream.iterators_taken) == taken


def test_child_shard_starts_per_target_after_the_parent_is_finished() -> None:
    stream = FakeStream({"parent": [record(1), record(2)], "child": [record(3)]}, closed={"parent"})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    targets = FakeTargets(down={"ap-southeast-1": 2})
    child = worker(stream, checkpoints, targets, clock, shard="child", parent="parent")
    child.check_parent()
    run_until_idle(child, clock)
    assert targets.applied == {}  # nothing read before the parent is done
    parent = worker(stream, checkpoints, targets, clock, shard="parent")
    run_until_idle(parent, clock)
    assert checkpoints.saved[parent.shard]["us-east-1"] == END
    assert checkpoints.saved[parent.shard]["ap-southeast-1"] == f"{1:021d}"
    child.check_parent()
    run_until_idle(child, clock)
    assert targets.applied["us-east-1"] == [1, 2, 3]
    assert targets.applied.get("ap-southeast-1") == [1]  # still waits for its parent
    assert child.waiting == {"ap-southeast-1"}
    targets.down.clear()
    run_until_idle(parent, clock)
    child.check_parent()
    run_until_idle(child, clock)
    assert targets.applied["ap-southeast-1"] == [1, 2, 3]


def test_expired_iterator_resumes_at_the_same_position() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 8)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    w = worker(stream, checkpoints, targets, clock)
    w.step()
    stream.expire_next = 1
    run_until_idle(w, clock)
    assert targets.applied["us-east-1"] == list(range(1, 8))  # none lost, none twice
    # The first step settled 1-3 and left 4-6 and 7 in flight; the read after them
    # expired: the new iterator starts after the last record read (7), still in flight.
    assert stream.iterators_taken == [("s1", None), ("s1", f"{7:021d}")]


def test_trimmed_position_restarts_at_trim_horizon() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 4)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    stream.trim_next = 1
    w = worker(stream, checkpoints, targets, clock)
    run_until_idle(w, clock)
    assert targets.applied["eu-west-1"] == [1, 2, 3]


def test_expired_checkpoint_says_what_was_lost_and_what_to_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = FakeStream({"s1": [record(i) for i in range(5, 8)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    checkpoints.saved[ShardRef("Orders", ARN, "s1")] = dict.fromkeys(TARGETS, f"{2:021d}")
    stream.trim_next = 1  # the checkpoint is older than the stream's retention
    w = worker(stream, checkpoints, targets, clock)
    with caplog.at_level(logging.ERROR):
        w.step()
    (message,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "older than the stream retention" in message.getMessage()
    assert "repair" in message.getMessage()
    assert sorted(message.targets) == sorted(TARGETS)  # type: ignore[attr-defined]
    run_until_idle(w, clock)
    assert targets.applied["us-east-1"] == [5, 6, 7]  # the rest is still replicated


def test_restart_resumes_after_the_checkpoint() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 8)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    checkpoints.saved[ShardRef("Orders", ARN, "s1")] = {
        "eu-west-1": f"{5:021d}",
        "us-east-1": f"{5:021d}",
        "ap-southeast-1": f"{2:021d}",
    }
    targets = FakeTargets()
    w = worker(stream, checkpoints, targets, clock)
    assert len(w.cursors) == 2
    run_until_idle(w, clock)
    assert targets.applied["us-east-1"] == [6, 7]
    assert targets.applied["ap-southeast-1"] == [3, 4, 5, 6, 7]
    assert len(w.cursors) == 1


def test_finished_shard_is_done_for_every_target() -> None:
    stream = FakeStream({"s1": [record(1)]}, closed={"s1"})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    w = worker(stream, checkpoints, targets, clock)
    run_until_idle(w, clock)
    assert w.done and w.finished == set(TARGETS)
    assert worker(stream, checkpoints, targets, clock).done  # a new owner does nothing


def test_backlog_counts_the_records_a_down_target_has_not_accepted() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 8)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    targets = FakeTargets(down={"ap-southeast-1": 3})
    w = worker(stream, checkpoints, targets, clock)
    started = clock.t
    run_until_idle(w, clock)
    assert w.stats.backlog == {"eu-west-1": 0, "us-east-1": 0, "ap-southeast-1": 5}  # 3..7
    assert w.stats.advanced_at["ap-southeast-1"] == started + 60  # it accepted 1 and 2 once
    assert w.stats.advanced_at["us-east-1"] > w.stats.advanced_at["ap-southeast-1"]
    assert w.stats.counters["ap-southeast-1"].failed >= 1
    assert "down" in w.stats.last_error["ap-southeast-1"]
    stream.shards["s1"].append(record(8))
    run_until_idle(w, clock)
    assert w.stats.backlog["ap-southeast-1"] == 6
    targets.down.clear()
    run_until_idle(w, clock)
    assert w.stats.backlog == {"eu-west-1": 0, "us-east-1": 0, "ap-southeast-1": 0}
    assert w.stats.records >= 8


def test_a_full_page_at_the_front_says_more_records_wait() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 18)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    w = worker(stream, checkpoints, targets, clock, limit=3)
    w.step()
    assert w.stats.records == 15  # five pages read in the step, the last full
    assert all(w.stats.backlog_more.values())  # 15 of 17 read (5 pages): the last was full
    run_until_idle(w, clock)
    assert not any(w.stats.backlog_more.values())


def test_a_failing_target_backs_off_doubling_up_to_the_cap() -> None:
    stream = FakeStream({"s1": [record(1)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=FakeTargets(down={"ap-southeast-1": 1}),
        targets=TARGETS,
        parent=None,
        clock=clock,
        retry_cap=1.0,
    )
    delays = []
    for _ in range(5):
        w.step()
        (paused,) = [c for c in w.cursors if "ap-southeast-1" in c.targets]
        delays.append(round(paused.retry_at - clock.t, 6))
        clock.t = paused.retry_at
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_each_accepted_page_tells_its_lag_per_target() -> None:
    stamp = SystemAttributes().timestamp
    written = [
        {
            "dynamodb": {
                "SequenceNumber": f"{i:021d}",
                "NewImage": {stamp: {"N": f"{ms}"}},
                "ApproximateCreationDateTime": ms // 1000,  # confirms the timestamp
            }
        }
        for i, ms in ((1, 1_700_000_000_000), (2, 1_700_000_004_000))
    ]
    stream = FakeStream({"s1": written})
    clock = ManualClock()
    clock.t = 1_700_000_010.0
    told: list[tuple[str, float]] = []
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=FakeCheckpoints(),
        process=FakeTargets(down={"ap-southeast-1": 1}),
        targets=TARGETS,
        parent=None,
        clock=clock,
        on_lag=lambda target, seconds: told.append((target, seconds)),
    )
    w.step()
    # The newest write of the page is 6 s old; the target that accepted nothing tells nothing.
    assert sorted(told) == [("eu-west-1", 6.0), ("us-east-1", 6.0)]


@dataclass
class Poison:
    """Every target fails at ``bad`` (the record itself); the other records are applied."""

    bad: int
    fixed: bool = False
    calls: int = 0

    def __call__(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        self.calls += 1
        seqs = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        bad = [s for s in seqs if int(s) == self.bad and not self.fixed]
        failures = tuple(RecordFailure(s, MissingTimestampError("no __timestamp")) for s in bad)
        # Like the writer: the other keys' records are applied, also those after the failure.
        done = {s: True for s in seqs if s not in bad}
        results = {t: TargetResult(t, applied=len(done), settled=done) for t in targets}
        return BatchResult(results, failures)


@dataclass
class FakeLot:
    parked_records: list[ParkedRecord] = field(default_factory=list)

    def park(self, parked: ParkedRecord) -> None:
        self.parked_records.append(parked)

    def parked(self, tables: Sequence[str] | None = None) -> list[ParkedRecord]:
        return list(self.parked_records)

    def remove(self, parked: ParkedRecord) -> None:
        self.parked_records.remove(parked)


def poisoned(
    process: Any, clock: ManualClock, lot: FakeLot | None = None, park_after: float = 300.0
) -> tuple[ShardWorker, FakeCheckpoints]:
    stream = FakeStream({"s1": [record(i) for i in range(1, 6)]})
    checkpoints = FakeCheckpoints()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=process,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=10,
        parking=lot,
        park_after=park_after,
        region="eu-west-1",
    )
    return w, checkpoints


def test_a_record_every_target_waits_on_is_backlog_for_each() -> None:
    clock = ManualClock()
    w, _ = poisoned(Poison(bad=3), clock)
    run_until_idle(w, clock, steps=5)
    # Before: every cursor had read as far as the others, so the backlog read 0.
    assert w.stats.backlog == dict.fromkeys(TARGETS, 3)  # 3, 4 and 5 lie beyond 2
    assert all(w.stats.advanced_at[t] < clock.t - 200 for t in TARGETS)


def test_a_target_seeded_at_an_older_position_is_the_only_one_behind() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 70)]})
    checkpoints, targets, clock = FakeCheckpoints(), FakeTargets(), ManualClock()
    ref = ShardRef("Orders", ARN, "s1")
    checkpoints.saved[ref] = {"eu-west-1": f"{69:021d}", "us-east-1": f"{69:021d}"}
    checkpoints.saved[ref]["ap-southeast-1"] = f"{10:021d}"  # add-region's seed
    w = worker(stream, checkpoints, targets, clock, limit=20)
    w.step()
    # Before: the new target's reads made the others look 20 records behind.
    assert w.stats.backlog["eu-west-1"] == w.stats.backlog["us-east-1"] == 0
    assert w.stats.backlog["ap-southeast-1"] >= 1  # catching up, advancing
    assert w.stats.advanced_at["ap-southeast-1"] == clock.t
    run_until_idle(w, clock)
    assert w.stats.backlog == dict.fromkeys(TARGETS, 0)


def test_a_replayed_page_counts_each_record_once() -> None:
    process, clock = Poison(bad=3), ManualClock()
    w, _ = poisoned(process, clock)
    run_until_idle(w, clock, steps=4)
    assert process.calls >= 4  # the page was replayed
    # 1, 2, 4, 5 applied once each; before, every replay counted 4 and 5 again.
    assert {w.stats.counters[t].applied for t in TARGETS} == {4}


def test_a_poison_record_is_parked_and_the_shard_moves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lot, clock = FakeLot(), ManualClock()
    w, checkpoints = poisoned(Poison(bad=3), clock, lot, park_after=100.0)
    w.step()
    assert not lot.parked_records  # not before park_after
    with caplog.at_level(logging.ERROR):
        run_until_idle(w, clock, steps=4)
    (parked,) = lot.parked_records
    assert parked.sequence == f"{3:021d}" and set(parked.targets) == set(TARGETS)
    assert "__timestamp" in parked.reason and parked.record["dynamodb"]["SequenceNumber"]
    assert any("record parked" in r.getMessage() for r in caplog.records)
    assert set(checkpoints.saved[w.shard].values()) == {f"{5:021d}"}  # moved on
    assert w.stats.backlog == dict.fromkeys(TARGETS, 0)
    assert {w.stats.counters[t].parked for t in TARGETS} == {1}


@dataclass
class TwoBadVersions:
    """Records 3 and 4 are two versions of one key, each failing by itself."""

    def __call__(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        seqs = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        bad = [s for s in seqs if int(s) in (3, 4)]
        failures = tuple(RecordFailure(s, MissingTimestampError("no __timestamp")) for s in bad)
        done = {s: True for s in seqs if s not in bad}
        return BatchResult(
            {t: TargetResult(t, applied=len(done), settled=done) for t in targets}, failures
        )


def test_a_second_version_of_a_parked_key_parks_at_once() -> None:
    keyed = [record(i) for i in range(1, 6)]
    for i, r in enumerate(keyed, start=1):
        r["dynamodb"]["Keys"] = {"pk": {"S": "big" if i in (3, 4) else f"k{i}"}}
    lot, clock = FakeLot(), ManualClock()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=FakeStream({"s1": keyed}),
        checkpoints=FakeCheckpoints(),
        process=TwoBadVersions(),
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=10,
        parking=lot,
        park_after=100.0,
        region="eu-west-1",
    )
    for _ in range(60):
        clock.t += 5
        w.step()
    first, second = lot.parked_records
    assert (first.sequence, second.sequence) == (f"{3:021d}", f"{4:021d}")
    assert first.parked_at - 1000.0 >= 100.0  # the first waited park_after
    assert second.parked_at - first.parked_at < 100.0  # the second did not wait again


def test_a_region_that_is_down_is_waited_for_never_parked() -> None:
    stream = FakeStream({"s1": [record(i) for i in range(1, 4)]})
    lot, clock, checkpoints = FakeLot(), ManualClock(), FakeCheckpoints()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=FakeTargets(down={"ap-southeast-1": 2}),
        targets=TARGETS,
        parent=None,
        clock=clock,
        parking=lot,
        park_after=1.0,
    )
    run_until_idle(w, clock)
    assert not lot.parked_records
    assert checkpoints.saved[w.shard]["ap-southeast-1"] == f"{1:021d}"
    assert w.stats.backlog["ap-southeast-1"] == 2


def test_a_parked_keys_next_version_parks_at_once_after_a_restart() -> None:
    """The lot outlives the worker: a restarted runner (a fresh worker, the same lot and
    checkpoints) parks the key's versions without waiting ``park_after`` again."""
    keyed = [record(i) for i in range(1, 6)]
    for i, r in enumerate(keyed, start=1):
        r["dynamodb"]["Keys"] = {"pk": {"S": "big" if i in (3, 4) else f"k{i}"}}
    lot, clock, checkpoints = FakeLot(), ManualClock(), FakeCheckpoints()

    def started() -> ShardWorker:
        return ShardWorker(
            ShardRef("Orders", ARN, "s1"),
            source=FakeStream({"s1": keyed}),
            checkpoints=checkpoints,
            process=TwoBadVersions(),
            targets=TARGETS,
            parent=None,
            clock=clock,
            page_limit=10,
            parking=lot,
            park_after=100.0,
            region="eu-west-1",
        )

    first = started()
    while not lot.parked_records:
        clock.t += 5
        first.step()
    assert lot.parked_records[0].kind == "MissingTimestampError"
    assert len(lot.parked_records) == 1  # record 3; record 4 is for the restarted worker
    restarted, at = started(), clock.t
    for _ in range(5):
        clock.t += 5
        restarted.step()
    assert {p.sequence for p in lot.parked_records} >= {f"{3:021d}", f"{4:021d}"}
    assert all(p.parked_at - at < 100.0 for p in lot.parked_records[1:])  # no wait again
    assert set(checkpoints.saved[restarted.shard].values()) == {f"{5:021d}"}  # moved on
