"""Defects an adversarial review found in the first version of pages in flight and of
the update's present-only put (P1u); each test failed before its fix."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import END, ShardRef
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .test_shardworker import ARN, TARGETS, FakeStream, record
from .test_writes import HERE, KEY, TABLE, THERE, put

DEADLINE = 200.0


def _writer(store: MemoryStore, clock: ManualClock) -> StoreWriter:
    protocol = WriteProtocol(
        store, LastWriterWins(FIELDS), FIELDS, clock, ".__tombstones", 60, True
    )
    return StoreWriter(protocol, WriterOptions(max_in_flight=2, backoff=Backoff(base=0.0)))


def _update(timestamp: str, seq: str) -> PutVersion:
    """An update (replaces set, not strict): P1u first."""
    return PutVersion(
        KEY, Version.of(timestamp, THERE), put(timestamp).image, seq, Version.of("1", THERE)
    )


def test_adv_no_write_of_an_update_starts_after_the_deadline() -> None:
    """The runner's lease argument needs: no write starts after ``deadline``. An update whose
    P1u answers late (slow response) and finds the item absent goes on with P0 and P1 inside
    the same ``_retrying`` call, whose deadline check ran only before P1u."""
    clock = ManualClock(100.0)
    store = MemoryStore(HERE)
    started: list[tuple[str, float]] = []

    def before(_s: MemoryStore, call: str) -> None:
        started.append((call, clock.t))
        if call == f"put {TABLE}" and len(started) == 1:
            clock.t = DEADLINE + 20  # the P1u round trip was slow: past the deadline now

    store.before_call = before
    w = _writer(store, clock)
    w.apply(TABLE, [_update("5", "3")], deadline=DEADLINE)
    w.close()
    late = [(call, at) for call, at in started if call.startswith("put") and at >= DEADLINE]
    assert late == [], started


def test_adv_zombie_update_past_its_lease_resurrects_a_delete() -> None:
    """The full consequence. Zombie Z holds the lease until DEADLINE (+margin). Its P1u of
    update V=5 starts in time, answers late and finds K absent here. Meanwhile Z's lease ran
    out: the new holder N replays the page from the checkpoint (the put V=5 settles, nothing
    to undo) and then the next record, a delete D=7 of K, and checkpoints past both. Z's P0
    read finds no tombstone (it runs before N's delete), then Z's P1 lands on the absent key
    after D2: V=5 is back, and Z's settling (P2) never starts (deadline). Nobody replays V
    again: the delete D=7 >= V is undone for good in this region."""
    clock = ManualClock(100.0)
    store = MemoryStore(HERE)
    new_holder = _writer(store, clock)
    calls: list[str] = []

    def before(_s: MemoryStore, call: str) -> None:
        calls.append(call)
        if call == f"put {TABLE}" and len(calls) == 1:
            clock.t = DEADLINE + 20  # slow answer; the lease has passed to N meanwhile
        if len(calls) == 3 and call == f"put {TABLE}":
            # Z's P0 read is done (calls[1]); before Z's P1: N replays the put and the
            # delete that follows it in the stream, and checkpoints past them.
            store.before_call = lambda _s, _c: None
            result = new_holder.apply(
                TABLE, [_update("5", "3"), DeleteVersion(KEY, Version.of("7", THERE), THERE, "4")]
            )
            assert result.failed_sequence is None
            assert store.item(TABLE, KEY) is None

    store.before_call = before
    zombie = _writer(store, clock)
    result = zombie.apply(TABLE, [_update("5", "3")], deadline=DEADLINE)
    zombie.close()
    new_holder.close()
    assert result.failed_sequence == "3"  # Z did not settle: it reports a failure...
    # ... but its checkpoint can no longer hold anything back: N is past it.
    assert store.item(TABLE, KEY) is None, "delete 7 undone by update 5"


# -- the shard worker under random partial failures, pages in flight -------------------


class RandomTargets:
    """Fails a target at a random record of a page; notes what succeeded where, and that
    writes of one target never overlap."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ok: dict[str, set[int]] = {t: set() for t in TARGETS}
        self.writing: dict[str, int] = {t: 0 for t in TARGETS}
        self.lock = threading.Lock()
        self.overlaps: list[str] = []

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
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        with self.lock:
            for t in targets:
                self.writing[t] += 1
                if self.writing[t] > 1:
                    self.overlaps.append(f"{t} {seqs}")
            fail_at = {t: self.rng.choice(seqs) for t in targets if self.rng.random() < 0.3}
            pause = self.rng.choice([0.0, 0.001])
        try:
            # The writes themselves, with the counters up: a second page of the same
            # target started meanwhile (on another flight's thread) counts as an overlap.
            time.sleep(pause)  # the targets' answer takes a while: a write's latency
            results = {}
            with self.lock:
                for t in targets:
                    failed = fail_at.get(t)
                    for s in seqs:
                        if failed is None or s < failed:
                            self.ok[t].add(s)
                    f = None if failed is None else f"{failed:021d}"
                    err = UnreachableError("x") if f else None
                    results[t] = TargetResult(t, failed_sequence=f, error=err)
        finally:
            with self.lock:
                for t in targets:
                    self.writing[t] -= 1
        # Its writes are done, the counters down: only now may the next page write (told
        # before, a page after it started while these still counted as writing).
        if written is not None:
            written()
        return BatchResult(results)


class CheckedCheckpoints:
    def __init__(self, targets: RandomTargets, total: int) -> None:
        self.targets = targets
        self.total = total
        self.saved: dict[ShardRef, dict[str, str]] = {}
        self.violations: list[str] = []

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved.get(shard, {}))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        with self.targets.lock:
            for t, p in positions.items():
                upto = self.total if p == END else int(p)
                missing = [s for s in range(1, upto + 1) if s not in self.targets.ok[t]]
                if missing:
                    self.violations.append(f"{t} checkpointed {p} without {missing}")
        self.saved.setdefault(shard, {}).update(positions)


def test_the_overlap_check_sees_two_pages_of_one_target_written_at_once() -> None:
    """The check below can fail: two calls for one target inside their writes together."""
    targets = RandomTargets(random.Random(1))
    both_inside = threading.Barrier(2, timeout=10)
    calls = [
        threading.Thread(
            target=targets, args=("Orders", [record(n)], TARGETS[:1], None, both_inside.wait)
        )
        for n in (1, 2)
    ]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert len(targets.overlaps) == 1


def run_shard(seed: int) -> tuple[int, int]:
    """Random partial failures per target, pages in flight, cursors that split (a target
    fails alone) and merge (they meet at one position again): no target is checkpointed
    past a record it did not accept, no target's writes overlap, and every target reaches
    END. Returns the splits and merges seen."""
    rng = random.Random(seed)
    total = 40
    stream = FakeStream({"s1": [record(i) for i in range(1, total + 1)]}, closed={"s1"})
    targets = RandomTargets(rng)
    checkpoints = CheckedCheckpoints(targets, total)
    clock = ManualClock()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=targets,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=rng.choice([1, 2, 3, 5]),
    )
    splits = merges = 0
    for _ in range(400):
        if w.done:
            break
        clock.t += rng.choice([0.0, 0.05, 60.0])
        before, ended = len(w.cursors), len(w.finished)
        w.step()
        if rng.random() < 0.1:
            w.flush()
        # A cursor leaves by merging into another, or by reaching the end (``finished``).
        splits += len(w.cursors) > before
        merges += len(w.cursors) < before and len(w.finished) == ended
    w.flush()
    assert checkpoints.violations == [], seed
    assert targets.overlaps == [], seed
    assert w.done, (seed, [(c.targets, c.position, c.failures) for c in w.cursors])
    return splits, merges


def test_adv_no_checkpoint_past_a_record_that_failed_for_its_target() -> None:
    seen = [run_shard(seed) for seed in range(40)]
    splits, merges = sum(s for s, _ in seen), sum(m for _, m in seen)
    print(f"{splits} splits, {merges} merges")
    assert splits >= 10 and merges >= 10, (splits, merges)  # the cursors really moved apart


class Scripted:
    """Fails (record, target) the given number of times; notes what each target accepted."""

    def __init__(self, fail: dict[tuple[int, str], int]) -> None:
        self.fail = dict(fail)
        self.ok: dict[str, set[int]] = {t: set() for t in TARGETS}

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
        for t in targets:
            failed = None
            for r in records:
                seq = int(r["dynamodb"]["SequenceNumber"])
                if self.fail.get((seq, t), 0) > 0:
                    self.fail[(seq, t)] -= 1
                    failed = r["dynamodb"]["SequenceNumber"]
                    break
                self.ok[t].add(seq)
            results[t] = TargetResult(
                t, failed_sequence=failed, error=UnreachableError("x") if failed else None
            )
        return BatchResult(results)


def test_adv_partial_failure_of_a_retrying_cursor_skips_the_page_read_ahead() -> None:
    """A, B, C at one cursor. Record 1 fails for all three: the cursor backs off (failures=1).
    On its retry, page 1 is applied and page 2 is read ahead and applied too; page 1 now fails
    for C only: C splits off, the cursor {A, B} keeps failures=1, so ``_carry`` discards the
    page read ahead, but ``_launch`` already moved ``cursor.iterator`` past page 2. Record 2
    failed for A in that read-ahead: A's checkpoint moves past record 2 without it ever being
    accepted by A (a lost write in that region)."""
    a, b, c = TARGETS
    script = Scripted({(1, a): 1, (1, b): 1, (1, c): 2, (2, a): 2})
    stream = FakeStream({"s1": [record(i) for i in range(1, 5)]})
    checkpoints = _Checkpoints(script)
    clock = ManualClock()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=checkpoints,
        process=script,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=1,
    )
    for _ in range(20):
        clock.t += 60
        w.step()
    w.flush()
    assert checkpoints.violations == []
    assert 2 in script.ok[a]


class _Checkpoints:
    def __init__(self, script: Scripted) -> None:
        self.script = script
        self.saved: dict[ShardRef, dict[str, str]] = {}
        self.violations: list[str] = []

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved.get(shard, {}))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        for t, p in positions.items():
            if p != END:
                missing = [s for s in range(1, int(p) + 1) if s not in self.script.ok[t]]
                if missing:
                    self.violations.append(f"{t} checkpointed {int(p)} without {missing}")
        self.saved.setdefault(shard, {}).update(positions)
