"""Adversarial review of 2985a95: a page's reads (``TargetWriter.prefetch``) in every
region first, ``ready`` once in the calling thread, then every region's writes with the
prefetched P0 (``apply(prefetched=)``), both phases through ``_in_regions`` (Handover);
the replicator's pool bounded again. One finding, fixed and pinned (at the end): a
region's slow P0 reads held back the writes of every region of the page. The other
attacks held."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dynamodb_replicator.core.model import Item, ItemKey, SystemAttributes, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion, WriteOp
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import Deadline, Prefetched, TargetResult
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.pipeline import StoppedPageError
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .fakes import FixedTombstones, RecordingWriter
from .strategies import FIELDS
from .test_pipeline import WAIT

REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
SOURCE = REGIONS[0]


def record(seq: int, name: str) -> dict[str, Any]:
    """An INSERT record (the JSON form) of key ``name`` with a timestamp."""
    image = {"pk": {"S": name}, FIELDS.timestamp: {"N": str(1000 + seq)}, "v": {"N": str(seq)}}
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"pk": {"S": name}},
            "NewImage": image,
            "SequenceNumber": f"{seq:021d}",
        },
    }


class Noting(RecordingWriter):
    """A RecordingWriter noting each phase (and what ``apply`` was handed) in ``log``."""

    def __init__(
        self, name: str, log: list[tuple[str, str, Any]], fail_prefetch: bool = False
    ) -> None:
        super().__init__(name)
        self.log, self.fail_prefetch = log, fail_prefetch
        self.lock = threading.Lock()

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        with self.lock:
            self.log.append(("prefetch", self.name, None))
        if self.fail_prefetch:
            raise RuntimeError(f"{self.name}: prefetch broke")
        return Prefetched({}, retried=7)

    def apply(
        self,
        table: str,
        ops: Sequence[WriteOp],
        *,
        deadline: Deadline = None,
        written: Callable[[], None] | None = None,
        prefetched: Prefetched | None = None,
    ) -> TargetResult:
        with self.lock:
            self.log.append(("apply", self.name, prefetched))
        result = super().apply(table, ops, deadline=deadline, prefetched=prefetched)
        if written is not None:
            written()
        return result


def replicator_of(writers: dict[str, Any]) -> Replicator:
    fields = SystemAttributes()
    return Replicator(
        source=SOURCE,
        writers=writers,
        tombstones=FixedTombstones(),
        policy=LastWriterWins(fields),
        fields=fields,
    )


def test_the_lambda_path_without_ready_reads_nothing_ahead_and_hands_apply_no_prefetch() -> None:
    """No ``ready`` (Lambda, CLI): each region's ``apply`` does its own P0 as before."""
    log: list[tuple[str, str, Any]] = []
    replicator = replicator_of({r: Noting(r, log) for r in REGIONS})
    try:
        result = replicator.process("T", [record(1, "a")], from_json=True)
    finally:
        replicator.close()
    assert result.failed_sequence() is None
    assert sorted(log) == sorted(("apply", r, None) for r in REGIONS)


def test_ready_runs_in_the_callers_thread_before_each_regions_writes_after_its_reads() -> None:
    """``ready`` is called once a region (363967e: a region whose reads end after the
    shard stopped starts no write), in the calling thread, each time after one more
    region's reads and before that region's writes."""
    log: list[tuple[str, str, Any]] = []
    replicator = replicator_of({r: Noting(r, log) for r in REGIONS})
    caller = threading.current_thread()
    seen: list[tuple[int, bool]] = []

    def ready() -> None:
        seen.append((len(log), threading.current_thread() is caller))

    try:
        replicator.process("T", [record(1, "a")], from_json=True, ready=ready)
    finally:
        replicator.close()
    assert [mine for _, mine in seen] == [True] * len(REGIONS)
    for k, (logged, _) in enumerate(seen):
        before = [e[0] for e in log[:logged]]
        assert before.count("prefetch") >= k + 1 and before.count("apply") <= k, (k, before)
    applies = [e for e in log if e[0] == "apply"]
    assert len(applies) == len(REGIONS)
    assert all(e[0] == "apply" and e[2] == Prefetched({}, retried=7) for e in applies)


def test_a_prefetch_raising_in_one_region_writes_nothing_there_and_opens_written() -> None:
    """One region's reads raise (a defect: a read error is swallowed, an optimisation):
    that region writes nothing, ``ready`` is called at most once a region (the other
    regions may have written: the page is replayed whole, harmless by the apply rule), the page
    raises once every batch it handed over ended, and ``written`` still comes."""
    log: list[tuple[str, str, Any]] = []
    writers = {r: Noting(r, log, fail_prefetch=(r == REGIONS[1])) for r in REGIONS}
    replicator = replicator_of(writers)
    readied, written = [], threading.Event()
    try:
        with pytest.raises(RuntimeError, match="prefetch broke"):
            replicator.process(
                "T",
                [record(1, "a")],
                from_json=True,
                ready=lambda: readied.append(True),
                written=written.set,
            )
    finally:
        replicator.close()
    assert len(readied) <= len(REGIONS) and written.is_set()
    assert [e for e in log if e[0] == "apply" and e[1] == REGIONS[1]] == []


def test_a_stop_in_ready_after_every_regions_reads_writes_nothing() -> None:
    log: list[tuple[str, str, Any]] = []
    replicator = replicator_of({r: Noting(r, log) for r in REGIONS})
    written = threading.Event()

    def ready() -> None:
        raise StoppedPageError("stopped")

    try:
        with pytest.raises(StoppedPageError):
            replicator.process(
                "T", [record(1, "a")], from_json=True, ready=ready, written=written.set
            )
    finally:
        replicator.close()
    assert written.is_set()
    assert [e for e in log if e[0] == "apply"] == []


class RefusingSecond(ThreadPoolExecutor):
    """A pool whose second hand-over fails (a thread it could not start)."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("can't start new thread")
        return super().submit(fn, *args, **kwargs)


def test_a_failed_hand_over_of_the_reads_starts_no_write_and_leaves_no_read_running() -> None:
    log: list[tuple[str, str, Any]] = []
    replicator = replicator_of({r: Noting(r, log) for r in REGIONS})
    replicator._pool.shutdown()
    pool = replicator._pool = RefusingSecond()
    readied: list[bool] = []
    try:
        with pytest.raises(RuntimeError, match="can't start"):
            replicator.process(
                "T", [record(1, "a")], from_json=True, ready=lambda: readied.append(True)
            )
        n = len(log)
        pool.shutdown(wait=True)
    finally:
        replicator.close()
    assert readied == [] and len(log) == n  # nothing ran on after process raised
    assert all(e[0] == "prefetch" for e in log)


def test_a_chain_of_pages_each_waiting_for_the_one_before_ends_on_a_one_thread_pool() -> None:
    """Six pages (one target region) enter ``process`` newest first; each waits in
    ``ready`` for the page before it to be written; a pool of one thread stands for a
    full one. Each page's reads and writes find the thread while the later pages wait."""
    writers = {r: RecordingWriter(r) for r in REGIONS[:2]}
    replicator = replicator_of(writers)
    replicator._pool.shutdown()
    replicator._pool = ThreadPoolExecutor(max_workers=1)
    pages = 6
    written = [threading.Event() for _ in range(pages)]
    gave_up: list[int] = []
    done: list[int] = []

    def page(i: int) -> None:
        def ready() -> None:
            if i and not written[i - 1].wait(5.0):
                gave_up.append(i)
                raise StoppedPageError("gave up")

        try:
            replicator.process(
                "T",
                [record(i + 1, f"k{i}")],
                from_json=True,
                regions=[REGIONS[1]],
                ready=ready,
                written=written[i].set,
            )
            done.append(i)
        except StoppedPageError:
            pass

    threads = [threading.Thread(target=page, args=(i,), daemon=True) for i in range(pages)]
    for t in reversed(threads):
        t.start()
    for t in threads:
        t.join(WAIT)
    replicator.close()
    assert gave_up == [] and sorted(done) == list(range(pages))
    keys = [op.key for op in writers[REGIONS[1]].received]
    assert keys == [ItemKey.from_attributes({"pk": {"S": f"k{i}"}}) for i in range(pages)]


# -- the real writer: P0 read, then a long wait, then the writes -----------------------------

TABLE, TOMBS = "T", "T.__tombstones"
HERE, THERE = "eu-west-1", "us-east-1"


def _key(name: str) -> ItemKey:
    return ItemKey.from_attributes({"pk": {"S": name}})


def _put(name: str, timestamp: str, seq: str = "00000000000000000001") -> PutVersion:
    image: Item = {"pk": {"S": name}, FIELDS.timestamp: {"N": timestamp}, "v": {"S": "x"}}
    return PutVersion(_key(name), Version.of(timestamp, THERE), image, seq)


def _delete(name: str, timestamp: str) -> DeleteVersion:
    return DeleteVersion(_key(name), Version.of(timestamp, THERE), THERE, "00000000000000000009")


def _protocol(store: MemoryStore, clock: ManualClock) -> WriteProtocol:
    return WriteProtocol(store, LastWriterWins(FIELDS), FIELDS, clock, ".__tombstones", 60)


def _writer(store: MemoryStore, clock: ManualClock) -> StoreWriter:
    options = WriterOptions(max_in_flight=2, backoff=Backoff(base=0.0))
    return StoreWriter(_protocol(store, clock), options)


def test_a_delete_landing_after_the_prefetch_is_not_undone_by_the_stale_p0() -> None:
    """P0 found no tombstone; while the page waited in ``ready`` a newer delete of the
    key landed in the target; the put then runs with the stale P0: no resurrection."""
    clock = ManualClock(100.0)
    store = MemoryStore(HERE)
    w = _writer(store, clock)
    other = _protocol(MemoryStore(HERE, tables=store.tables), clock)
    try:
        w.apply(TABLE, [_put("k", "1")])
        put = _put("k", "5", "00000000000000000002")
        prefetched = w.prefetch(TABLE, [put])
        assert _key("k") not in prefetched.tombstones
        other.delete(TABLE, _delete("k", "9"))  # lands during the wait
        result = w.apply(TABLE, [put], prefetched=prefetched)
    finally:
        w.close()
    assert result.failed_sequence is None
    assert store.item(TABLE, _key("k")) is None


def test_a_deadline_passing_between_the_prefetch_and_the_writes_starts_no_write() -> None:
    clock = ManualClock(100.0)
    store = MemoryStore(HERE)
    w = _writer(store, clock)
    try:
        put = _put("fresh", "5", "00000000000000000003")
        prefetched = w.prefetch(TABLE, [put], deadline=150.0)
        clock.t = 200.0  # the page waited in ``ready`` past its lease's fence
        result = w.apply(TABLE, [put], deadline=150.0, prefetched=prefetched)
    finally:
        w.close()
    assert result.failed_sequence == "00000000000000000003"
    assert store.item(TABLE, _key("fresh")) is None


def test_the_prefetchs_retries_are_counted_once_in_the_writes_result() -> None:
    """A P0 read retried once: counted once in the TargetResult, whether the writer read
    ahead (``prefetched``) or read itself (the Lambda path)."""

    from dynamodb_replicator.core.errors import ThrottledError  # noqa: PLC0415

    counts = []
    for ahead in (True, False):
        clock = ManualClock(100.0)
        tries = [0]

        def flaky(_store: MemoryStore, call: str, tries: list[int] = tries) -> None:
            if call == f"get {TOMBS}":
                tries[0] += 1
                if tries[0] == 1:
                    raise ThrottledError("slow down")

        store = MemoryStore(HERE, before_call=flaky)
        w = _writer(store, clock)
        try:
            put = _put(f"n{ahead}", "5")
            pre = w.prefetch(TABLE, [put]) if ahead else None
            result = w.apply(TABLE, [put], prefetched=pre)
        finally:
            w.close()
        assert tries[0] >= 2
        counts.append(result.retried)
    assert counts == [1, 1]


# -- observation: one region's slow reads hold back every region's writes ------------------


class SlowReads(Noting):
    """Its P0 reads hang until ``release`` (a region that stopped answering: each read
    retried up to its Backoff's attempts, a request timeout each)."""

    def __init__(self, name: str, log: list[tuple[str, str, Any]]) -> None:
        super().__init__(name, log)
        self.release = threading.Event()

    def prefetch(
        self, table: str, ops: Sequence[WriteOp], *, deadline: Deadline = None
    ) -> Prefetched:
        self.release.wait(WAIT)
        return super().prefetch(table, ops, deadline=deadline)


def test_a_regions_writes_do_not_wait_for_another_regions_slow_reads() -> None:
    """Targets us (healthy) and ap (its P0 reads hang): us's writes start once us's own
    reads are done (``ready`` after the first region's reads, each region's writes after
    its own), as on the Lambda path. (Review finding: ``ready`` after every region's
    reads held us's writes for as long as ap's reads were retried.)"""
    log: list[tuple[str, str, Any]] = []
    slow = SlowReads(REGIONS[2], log)
    writers: dict[str, Any] = {r: Noting(r, log) for r in REGIONS[:2]}
    writers[REGIONS[2]] = slow
    replicator = replicator_of(writers)
    page = threading.Thread(
        target=replicator.process,
        args=("T", [record(1, "a")]),
        kwargs={"from_json": True, "regions": REGIONS[1:], "ready": lambda: None},
        daemon=True,
    )
    page.start()
    try:
        started = threading.Event()

        def poll() -> None:
            for _ in range(100):  # 1 s, bounded
                if ("apply", REGIONS[1], Prefetched({}, retried=7)) in log:
                    started.set()
                    return
                threading.Event().wait(0.01)

        poll()
        assert started.is_set()  # us's writes started while ap's reads still hang
    finally:
        slow.release.set()
        page.join(WAIT)
        replicator.close()


def test_a_reload_while_a_page_waits_in_ready_lets_its_writes_run_on_the_old_replicator() -> None:
    """Page B read ahead (old replicator) and waits in ``ready`` for page A; a reload
    replaces the replicator; A runs on the new one; B's writes still find the old one's
    pool (closed only after B's end), nothing refused."""
    from dynamodb_replicator.runner.replaceable import Replaceable  # noqa: PLC0415

    old_writers = {r: RecordingWriter(r) for r in REGIONS[:2]}
    new_writers = {r: RecordingWriter(r) for r in REGIONS}
    old, new = replicator_of(old_writers), replicator_of(new_writers)
    replaceable = Replaceable(old)
    a_written, b_waiting = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def ready_b() -> None:
        b_waiting.set()
        assert a_written.wait(WAIT)

    def page_b() -> None:
        results["b"] = replaceable.process(
            "T", [record(2, "b")], from_json=True, regions=[REGIONS[1]], ready=ready_b
        )

    b = threading.Thread(target=page_b, daemon=True)
    b.start()
    assert b_waiting.wait(WAIT)
    replaceable.replace(new)
    results["a"] = replaceable.process(
        "T", [record(1, "a")], from_json=True, regions=REGIONS[1:], written=a_written.set
    )
    b.join(WAIT)
    try:
        assert not b.is_alive()
        assert results["b"].failed_sequence() is None and results["a"].failed_sequence() is None
        assert [op.key for op in old_writers[REGIONS[1]].received] == [
            ItemKey.from_attributes({"pk": {"S": "b"}})
        ]
        assert old._pool._shutdown  # closed by its last page
    finally:
        replaceable.close()


def test_many_shards_five_flights_of_one_key_each_share_a_one_thread_pool_without_deadlock() -> (
    None
):
    """Four shards, each with ``PAGES_IN_FLIGHT`` pages in flight (``Flight.launch`` after
    the four before), all through one replicator whose pool has one thread (a full
    bounded pool): every page ends, each shard's writes in page order (its pages share
    one key: each waits, reads and writes, for the writes of the pages before it; the
    first page of each shard, its reads done, gives the later ones time to write first)."""
    from dynamodb_replicator.core.defaults import PAGES_IN_FLIGHT  # noqa: PLC0415
    from dynamodb_replicator.core.streams import Page  # noqa: PLC0415
    from dynamodb_replicator.runner.pipeline import Flight  # noqa: PLC0415

    class Telling(RecordingWriter):
        """A RecordingWriter that tells ``wrote`` of each write."""

        def apply(self, table: str, ops: Sequence[WriteOp], **kw: Any) -> TargetResult:
            result = super().apply(table, ops, **kw)
            with wrote:
                wrote.notify_all()
            return result

    wrote = threading.Condition()
    writers: dict[str, RecordingWriter] = {r: Telling(r) for r in REGIONS[:2]}

    def others_write_first(shard: int) -> None:
        """A bounded wait for what must not happen: a later page of ``shard`` writing."""
        key = ItemKey.from_attributes({"pk": {"S": f"s{shard}"}})
        with wrote:
            wrote.wait_for(lambda: any(o.key == key for o in writers[REGIONS[1]].received), 0.3)

    replicator = replicator_of(writers)
    replicator._pool.shutdown()
    replicator._pool = ThreadPoolExecutor(max_workers=1)
    shards, pages = 4, PAGES_IN_FLIGHT + 3
    flights: list[list[Flight]] = [[] for _ in range(shards)]
    try:
        for p in range(pages):
            for s in range(shards):
                seq = s * 100 + p + 1
                page = Page([record(seq, f"s{s}")], "next")

                def run(
                    written: Callable[[], None],
                    ready: Callable[[], None],
                    page: Page = page,
                    shard: int = s if p == 0 else -1,
                ) -> Any:
                    def held(ready: Callable[[], None] = ready) -> None:
                        ready()
                        if shard >= 0:
                            others_write_first(shard)

                    return replicator.process(
                        "T",
                        page.records,
                        from_json=True,
                        regions=[REGIONS[1]],
                        written=written,
                        ready=held,
                    )

                mine = flights[s]
                before = mine[-(PAGES_IN_FLIGHT - 1) :]
                flight = Flight.launch(page, [REGIONS[1]], run, f"s{s}p{p}", after=before)
                mine.append(flight)
        for mine in flights:
            for flight in mine:
                ended = threading.Event()

                def finish(f: Flight = flight, ended: threading.Event = ended) -> None:
                    f.finish_quietly()
                    ended.set()

                threading.Thread(target=finish, daemon=True).start()
                assert ended.wait(WAIT)
                assert flight.result().failed_sequence() is None
    finally:
        replicator.close()
    received = writers[REGIONS[1]].received
    for s in range(shards):
        key = ItemKey.from_attributes({"pk": {"S": f"s{s}"}})
        seqs = [int(op.sequence_number) for op in received if op.key == key]
        assert seqs == [s * 100 + p + 1 for p in range(pages)]


def test_a_deadline_passing_while_the_page_waits_in_ready_fails_the_page_in_every_region() -> None:
    """Real writers: the reads run in time; the wait in ``ready`` outlasts the lease's
    fence: no region writes, the page fails at its first record (nothing checkpointed)."""
    clock = ManualClock(100.0)
    stores = {r: MemoryStore(r) for r in REGIONS}
    writers = {r: _writer(stores[r], clock) for r in REGIONS}
    replicator = replicator_of(writers)

    def ready() -> None:
        clock.t = 200.0

    try:
        result = replicator.process(
            "T",
            [record(1, "a"), record(2, "b")],
            from_json=True,
            regions=REGIONS[1:],
            deadline=150.0,
            ready=ready,
        )
    finally:
        replicator.close()
    assert result.failed_sequence() == f"{1:021d}"
    for r in REGIONS:
        assert stores[r].item("T", _key("a")) is None and stores[r].item("T", _key("b")) is None
