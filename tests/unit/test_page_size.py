"""A shard moves forward on a network too slow for a full page to fit its lease window: the
page size halves after a deadline miss and grows back once pages fit again."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import DeadlineError
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.page_size import PageSize
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, record

WINDOW = 5.0  # seconds a page has before its deadline (renewals stalled)
REF = ShardRef("Orders", ARN, "s1")


@dataclass
class SlowStore:
    """A page's cost in seconds, like the writer's: the tombstone reads of all its keys
    (``read_s`` a record) before any write, then one write a record (``write_s``); a write
    whose turn comes at or after ``WINDOW`` is not started (DeadlineError), nor the rest."""

    read_s: float = 0.1
    write_s: float = 0.05
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
            elapsed, failed = self.read_s * len(records), None
            for r in records:
                if elapsed >= WINDOW:
                    failed = str(r["dynamodb"]["SequenceNumber"])
                    break
                elapsed += self.write_s
                self.applied.setdefault(target, []).append(int(r["dynamodb"]["SequenceNumber"]))
            error = DeadlineError("no time left to start this write") if failed else None
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        return BatchResult(results)


def steps_until(done: Callable[[], bool], step: Callable[[], None], most: int = 200) -> int:
    for taken in range(most):
        if done():
            return taken
        step()
    return most


def test_a_shard_moves_forward_when_a_full_page_never_fits_the_lease_window() -> None:
    stream = FakeStream({"s1": [record(n) for n in range(1, 101)]})
    checkpoints, store, clock = FakeCheckpoints(), SlowStore(), ManualClock()
    # 100 records: 10 s of reads before the first write, twice the window.
    w = ShardWorker(
        REF,
        source=stream,
        checkpoints=checkpoints,
        process=store,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=100,
    )

    def step() -> None:
        clock.t += 60  # past any backoff
        w.step()

    def caught_up(last: int) -> Callable[[], bool]:
        want = dict.fromkeys(TARGETS, f"{last:021d}")
        return lambda: checkpoints.saved.get(REF) == want

    assert steps_until(caught_up(100), step) < 200
    assert all(sorted(set(store.applied[t])) == list(range(1, 101)) for t in TARGETS)
    assert min(c.size.limit for c in w.cursors) < 100
    # The network is fast again: the size grows back to the configured limit.
    store.read_s = store.write_s = 0.0
    stream.shards["s1"] += [record(n) for n in range(101, 1001)]
    assert steps_until(caught_up(1000), step) < 200
    assert [c.size.limit for c in w.cursors] == [100]


def test_the_page_size_halves_on_a_miss_and_doubles_back_after_calm_pages() -> None:
    size = PageSize(1000, calm=2)
    for _ in range(20):
        size.settled(late=True)
    assert size.limit == 1  # one record always gets its write started
    sizes = []
    for _ in range(24):
        size.settled(late=False)
        sizes.append(size.limit)
    assert sizes[:4] == [1, 2, 2, 4] and sizes[-1] == 1000
    size.settled(late=True)
    assert size.limit == 500
