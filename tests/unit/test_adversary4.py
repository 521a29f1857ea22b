"""Second adversarial review of pages in flight and of the update's present-only put (P1u),
after the fixes of 2bb9dea and 8891d12; each test failed before its fix."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pytest

from dynamodb_replicator.core import workers as workers_module
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import UnreachableError
from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, record
from .test_writes import HERE, TABLE, THERE, writer

WAIT = 10.0  # seconds: only a hang reaches it
# How long a defect gets to show itself where a test asserts that something does NOT
# happen (apply ending early): the correct writer never ends within it.
WINDOW = 0.5


def _insert(name: str, seq: str) -> PutVersion:
    key = ItemKey.from_attributes({"pk": {"S": name}})
    image: Item = {"pk": {"S": name}, FIELDS.timestamp: {"N": "5"}}
    return PutVersion(key, Version.of("5", THERE), image, seq)


def test_adv_apply_does_not_end_while_a_chain_of_it_still_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first chain that raised an unexpected error (not a ReplicatorError) made apply
    raise while other keys' chains still wrote, unsettled: the page's 'written' gate
    opened, the shard thread (and flush) could end, and _reap + balance re-acquire the
    lease at once while an orphan put retried until the old lease's deadline."""
    store = MemoryStore(HERE)
    lock = threading.Lock()
    puts: list[int] = []
    second = threading.Event()
    release = threading.Event()
    still_writing = threading.Event()

    def before(_s: MemoryStore, call: str) -> None:
        if call != f"put {TABLE}":
            return
        with lock:
            puts.append(1)
            mine = len(puts)
        if mine == 1:
            assert second.wait(WAIT)
            raise RuntimeError("a bug in one key's chain")
        second.set()
        still_writing.set()
        assert release.wait(WAIT)  # a slow put (or one waiting for its retry)
        still_writing.clear()

    store.before_call = before
    # The state to reach before the slow put may end: the failing chain ended (the pool
    # recorded its error) while the other one still writes. Only the batch of the two
    # chains counts: apply's tombstone read and settling are batches of one call here.
    chain_failed = threading.Event()
    real_finish = workers_module._Batch.finish

    def finish(batch: Any, index: int, result: Any, error: BaseException | None) -> None:
        real_finish(batch, index, result, error)
        if error is not None and len(batch.results) == 2:
            chain_failed.set()

    monkeypatch.setattr(workers_module._Batch, "finish", finish)
    w = writer(store)
    ended = threading.Event()
    overlapped: list[bool] = []

    def run() -> None:
        try:
            w.apply(TABLE, [_insert("a", "1"), _insert("b", "2")])
        except RuntimeError:
            pass
        finally:
            overlapped.append(still_writing.is_set())  # at the moment apply ended
            ended.set()

    threading.Thread(target=run, daemon=True).start()
    assert second.wait(WAIT)
    assert chain_failed.wait(WAIT)  # one chain raised; the other key's put still writes
    assert still_writing.is_set()
    # The defect ends apply at once from here; the correct writer waits for the slow put.
    assert not ended.wait(WINDOW), "apply ended while another key's put was still being written"
    release.set()
    assert ended.wait(WAIT)
    w.close()
    assert overlapped == [False], "apply ended while another key's put was still being written"


# -- counting: what a discarded page read ahead did ---------------------------------------


class Idempotent:
    """A Process over real apply-rule semantics: a record lands the first time it reaches
    a target and is stale on every replay; the first attempt of record 1 fails everywhere."""

    def __init__(self) -> None:
        self.landed: dict[str, set[str]] = {t: set() for t in TARGETS}
        self.failed_once = False

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
        fail = not self.failed_once and int(seqs[0]) == 1
        self.failed_once |= fail
        if written is not None:
            written()
        results = {}
        for t in targets:
            if fail:
                err = UnreachableError("x")
                results[t] = TargetResult(t, failed_sequence=seqs[0], error=err)
                continue
            settled = {s: s not in self.landed[t] for s in seqs}
            self.landed[t].update(seqs)
            applied = sum(settled.values())
            results[t] = TargetResult(
                t, applied=applied, stale=len(seqs) - applied, settled=settled
            )
        return BatchResult(results)


def test_adv_a_discarded_page_read_ahead_is_counted_once_as_what_it_did() -> None:
    total = 3
    stream = FakeStream({"s1": [record(i) for i in range(1, total + 1)]}, closed={"s1"})
    process = Idempotent()
    clock = ManualClock()
    w = ShardWorker(
        ShardRef("Orders", ARN, "s1"),
        source=stream,
        checkpoints=FakeCheckpoints(),
        process=process,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=1,
    )
    for _ in range(20):
        if w.done:
            break
        clock.t += 60
        w.step()
    w.flush()
    assert w.done
    assert all(process.landed[t] == {f"{i:021d}" for i in range(1, 4)} for t in TARGETS)
    applied = {t: w.stats.counters[t].applied for t in TARGETS}
    assert applied == {t: total for t in TARGETS}, applied
