"""Review 11 of the control path (tests only, on main de0fb10): what reviews 1-10 did not try.

Reproduced, and fixed since (each test failed before its fix: a page size per cursor,
``runner/shard_state.py``; every dropped shard's stop event set before the first join,
``Held.stop``):

- (low; liveness, no write lost or resurrected) A shard's page size is one ``PageSize``
  for all of its cursors. A target whose pages miss the deadline at its lowest record
  splits off and backs off; meanwhile the cursor of the targets that keep up settles page
  after page in time, and every ``calm`` of them doubles the shared size back. Once the
  split cursor's backoff is longer than ``calm`` of the others' pages, each of its
  retries reads a full page again, misses at its lowest record, halves the size, and the
  others double it back before its next retry: under page_size.py's own premise (a
  page's first write comes after reads that grow with the page), the slow target stops
  moving while its shard has other traffic (stuck at record 12 of a 100-record backlog
  for 10 simulated minutes). In the runner the premise is rare (the fence moves on with
  every renewal, so a page misses only while renewals fail); page_size.py states it
  (``test_a_split_cursor_gets_a_page_size_it_can_finish_while_other_targets_read_on``).
- (low-medium; bounded, not "within a few seconds") ``Runner.shutdown`` drops its shards
  one at a time (``Held.drop``: stop event, then join until the page ends or its fence).
  While it waits for the first shard's page, the shards whose stop event is not set yet
  read and apply page after page (several each in the test), and each of those is waited
  for in turn: a stop takes the sum of the shards' page times (up to one fence each, 22.5
  s by default) instead of the longest one (docs/operating/runner.md: "stops within a few
  seconds"). A stop that outlives the orchestrator's grace period ends in SIGKILL: the
  leases are not handed back and the shards wait a lease (nothing is lost). ``restart_all``
  and ``take_up`` drop their shards the same way (a reload's pause)
  (``test_a_stop_starts_no_page_beyond_each_shards_read_ahead_while_it_waits_for_one``).

Held (no defect reproduced), each pinned by a passing test below:

- a holder paused (SIGSTOP) longer than a lease, with a renewal and a heartbeat built and
  not yet sent: it is not dead to ``liveness.dead`` (a stopped process is alive), so a
  successor with the same worker id waits for its claim to expire; after it took the claim
  and the shard, the paused one's renewal and heartbeat land and are refused (token,
  expiry), its fence has passed on both clocks, and its checkpoint save is refused;
- a reload that removes a target and a second that adds it back while one page is out
  (the page goes through the replicator without it): the target fails that page at its
  first record (``RemovedTargetError``), no position of it is saved past what it applied,
  and it catches up from its checkpoint;
- the page-size rule as documented: a page whose lowest failed record is a throttle (the
  later ones missed the deadline) is not halved, one whose lowest is a DeadlineError is;
- a split page (a target missed the deadline mid-page) is checkpointed for that target
  after the last record it applied, and its re-read after an expired iterator resumes
  there, at the halved size (saving the missed record too fails it);
- a renewal sent before a wall-clock step (forward, or back from a clock an hour ahead)
  and answered after it, then a reload that shortens the lease (the shard dropped, kept,
  taken again through the same store) and the holder's death: the other worker takes the
  shard only after every write the new lease's fence let start has landed, and no lease
  lives past its claim (a lease believed 5 s longer than stored fails it).

Tried, reasoned, not pinned (no interleaving found): the Lambda handler returning with its
settling still out and the batch retried meanwhile (settling's P3 removes only what a
remembered delete covers); ``restart_all`` closing a replicator whose left page is
between its decode and its hand-over (the submit raises, ``Handover.abandon`` waits for
nothing started; a batch queued before the shutdown runs past the fence and starts no
write); a retried or bisected Lambda batch (the handler returns only once every write
answered or was waited out; a raise comes after ``Handover.abandon`` waited). The
control-plane simulations ran on fresh seeds from 2000000 without a violation:
shard_sim.py 33194 seeds, the base simulation 50592, clock steps 46416, dropped leases
under steps 44343, late landings 27538 (each module's ``run`` and ``violations``, seed by seed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import DeadlineError, ReplicatorError, ThrottledError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Deadline, TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import LeaseLostError, Page, ShardRef
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.held import RemovedTargetError, unknown_targets_failed
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.shardworker import Process, ShardWorker
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .fakes import PageReplicator
from .reloading import reloading_runner, rewrite
from .test_control_plane_clock_steps import SteppedClock
from .test_page_size import SlowStore
from .test_runner_outage import NAMES, FakeStreams, NoParking
from .test_shardworker import ARN, TARGETS, FakeCheckpoints, FakeStream, record

REF = ShardRef("Orders", ARN, "s1")
SLOW = "ap-southeast-1"
LEASE = 30.0
A0 = ShardRef("Orders", "arn:a/stream/Orders", "a-0")


def seq(n: int) -> str:
    return f"{n:021d}"


def _worker(
    stream: FakeStream,
    checkpoints: FakeCheckpoints,
    process: Process,
    clock: ManualClock,
    page_limit: int,
) -> ShardWorker:
    """A worker of shard REF to TARGETS."""
    return ShardWorker(
        REF,
        source=stream,
        checkpoints=checkpoints,
        process=process,
        targets=TARGETS,
        parent=None,
        clock=clock,
        page_limit=page_limit,
    )


@dataclass
class SlowFor:
    """test_page_size.py's SlowStore for the ``slow`` target alone (the tombstone reads of
    the page's keys, ``read_s`` a record, before its first write; no write started at or
    after its 5 s window); the other targets apply every page at once."""

    slow: str
    store: SlowStore = field(default_factory=lambda: SlowStore(read_s=0.4))  # 12 records fit

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
        slow = self.store(table, records, [t for t in targets if t == self.slow])
        fast = {t: TargetResult(t) for t in targets if t != self.slow}
        return BatchResult({**slow.targets, **fast})


# -- page splitting -------------------------------------------------------------------------
def test_a_split_cursor_gets_a_page_size_it_can_finish_while_other_targets_read_on() -> None:
    """Interleaving (ManualClock, one new record every 0.5 s, a step every 0.5 s):

    1. page 1-100 goes to all three targets; SLOW's reads alone take 40 s, past its 5 s
       window: its lowest record misses the deadline, the others apply the page. The size
       halves to 50; SLOW splits off into a cursor of its own at its checkpoint (none),
       backing off 0.2 s, 0.4 s, ... (doubling, up to 30 s).
    2. The others' cursor reads the one new record of each step: in time, and every 4th
       such page doubles the size (``PageSize.calm``).
    3. SLOW's retries come at 50, 25, 12 (4 records fit, then a miss: halved to 6) and,
       its backoff growing, at sizes the others have doubled back meanwhile (48, then 100):
       each misses at its lowest record, halves, and waits longer; 4 x 0.5 s of the
       others' pages double 50 back to 100 before each retry.

    SLOW's checkpoint stays near record 12 for the rest of the run (10 simulated minutes),
    though a page of 6 or 12 records moves it every time."""
    stream = FakeStream({"s1": [record(n) for n in range(1, 101)]})
    checkpoints, targets, clock = FakeCheckpoints(), SlowFor(SLOW), ManualClock()
    worker = _worker(stream, checkpoints, targets, clock, 100)
    worker.step()
    # The state the test is about: SLOW missed at its lowest record and split off, the
    # others applied the page.
    assert any(c.targets == {SLOW} and c.position is None for c in worker.cursors)
    fast = [t for t in TARGETS if t != SLOW]
    assert checkpoints.saved[REF] == dict.fromkeys(fast, seq(100))
    last = 100
    for _ in range(1200):  # 600 s
        clock.t += 0.5
        last += 1
        stream.shards["s1"].append(record(last))
        worker.step()
    saved = checkpoints.saved[REF]
    assert all(int(saved[t]) >= last - 2 for t in fast), saved  # the others read on
    # SLOW caught up with the backlog it had when it split off.
    assert int(saved.get(SLOW, "0")) >= 100, f"{SLOW} stuck at {saved.get(SLOW)}"


@pytest.mark.parametrize(("lowest", "halved"), [(ThrottledError, False), (DeadlineError, True)])
def test_a_page_is_halved_only_when_its_lowest_failure_missed_the_deadline(
    lowest: type[ReplicatorError], halved: bool
) -> None:
    """Record 1 fails with ``lowest`` for SLOW, records 2-10 miss the deadline: the
    page-size rule reads the error at the lowest failed record alone (page_size.py)."""

    def process(
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
        first = str(records[0]["dynamodb"]["SequenceNumber"])
        error = lowest(f"record {first}: {lowest.__name__}")
        return BatchResult(
            {
                t: TargetResult(t, failed_sequence=first, error=error)
                if t == SLOW
                else TargetResult(t)
                for t in targets
            }
        )

    stream = FakeStream({"s1": [record(n) for n in range(1, 11)]})
    checkpoints, clock = FakeCheckpoints(), ManualClock()
    worker = _worker(stream, checkpoints, process, clock, 10)
    worker.step()
    # The state the test is about: SLOW failed at record 1, split off, nothing saved of it.
    assert any(c.targets == {SLOW} and c.position is None for c in worker.cursors)
    assert SLOW not in checkpoints.saved.get(REF, {})
    slow = next(c for c in worker.cursors if c.targets == {SLOW})
    assert (slow.size.limit < 10) is halved


# -- a reload that removes a target and adds it back while one page is out ---------------
class _Reloads:
    """The shard's ``process``: a page goes through the replicator current when it starts
    (``writers``), as runner/held.py's does; ``during`` runs while the first page is out
    (after its replicator was taken)."""

    def __init__(self, during: Callable[[], None]) -> None:
        self.writers = set(TARGETS)
        self.during = during
        self.applied: dict[str, set[int]] = {}

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
        writers = set(self.writers)
        during, self.during = self.during, lambda: None
        during()
        results = {}
        for target in targets:
            if target not in writers:
                continue
            self.applied.setdefault(target, set()).update(
                int(r["dynamodb"]["SequenceNumber"]) for r in records
            )
            results[target] = TargetResult(target)
        return unknown_targets_failed(BatchResult(results), targets, records)


@dataclass
class _CheckedCheckpoints(FakeCheckpoints):
    """Checkpoints that refuse a position past what its target applied."""

    applied: dict[str, set[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        for target, position in positions.items():
            missing = set(range(1, int(position) + 1)) - self.applied.get(target, set())
            if missing:
                self.problems.append(f"{target} saved at {position}, missing {sorted(missing)}")
        super().save(shard, positions)


def test_a_target_removed_and_added_back_during_a_page_saves_nothing_it_did_not_apply() -> None:
    """Interleaving: the shard's step took no leaving target, then launched page 1-10;
    the page took the replicator without ``SLOW`` (reload 1 replaced it), and reload 2
    gave ``SLOW`` back to the shard (``add_targets`` after ``remove_targets``: both
    before the shard's next step, so the shard never dropped it)."""
    clock = ManualClock()
    worker: list[ShardWorker] = []

    def reload_out_and_back() -> None:
        worker[0].remove_targets([SLOW])  # reload 1 (the page's replicator lacks SLOW)
        worker[0].add_targets([SLOW])  # reload 2, before the shard's next step

    reloads = _Reloads(reload_out_and_back)
    reloads.writers.discard(SLOW)  # the replicator the first page takes
    checkpoints = _CheckedCheckpoints(applied=reloads.applied)
    stream = FakeStream({"s1": [record(n) for n in range(1, 11)]})
    worker.append(_worker(stream, checkpoints, reloads, clock, 10))
    worker[0].step()
    # The state the test is about: SLOW failed the page as removed, still a target.
    assert SLOW in worker[0].targets and SLOW not in reloads.applied
    assert isinstance(worker[0].stats.last_error.get(SLOW), str)
    assert "removed from the configuration" in worker[0].stats.last_error[SLOW]
    reloads.writers.add(SLOW)  # reload 2's replicator
    for _ in range(20):
        clock.t += 60  # past any backoff
        worker[0].step()
        if checkpoints.saved.get(REF, {}).get(SLOW) == seq(10):
            break
    assert checkpoints.saved[REF] == dict.fromkeys(TARGETS, seq(10))
    assert reloads.applied[SLOW] == set(range(1, 11))
    assert not checkpoints.problems, checkpoints.problems
    assert RemovedTargetError(SLOW).retryable


# -- a holder paused (SIGSTOP) longer than a lease, a successor with the same id ----------
_STOPS = (
    "import sys\n"
    "from dynamodb_replicator.runner.liveness import this_instance\n"
    "print(this_instance(), flush=True)\n"
    "sys.stdin.read()\n"
)


def _state(pid: int) -> str:
    text = (Path("/proc") / str(pid) / "stat").read_text()
    return text[text.rfind(")") + 2 :].split()[0]


def _poll_stopped(pid: int) -> None:
    for _ in range(2000):
        if _state(pid) == "T":
            return
        threading.Event().wait(0.005)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_paused_holder_is_not_dead_and_what_it_sends_on_resuming_moves_nothing() -> None:
    """Interleaving: process P (worker id w1) holds A0; its keeper builds a renewal of A0
    (expiry and order taken) and is stopped (SIGSTOP) before sending it, for two leases.
    A successor S starts as w1: P is not dead (stopped, not gone), so S's claim is
    refused while P's lives; once P's claim expired S claims w1 and takes A0. Then P
    resumes: its renewal lands, then a heartbeat built before the stop, then its tick."""
    child = subprocess.Popen(
        [sys.executable, "-c", _STOPS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        paused_instance = child.stdout.readline().strip()
        os.kill(child.pid, signal.SIGSTOP)
        _poll_stopped(child.pid)
        # The state the test is about: the holder's process is stopped, and not dead.
        assert _state(child.pid) == "T"
        assert not liveness.dead(paused_instance)
        _paused_holder_resumes(paused_instance)
    finally:
        os.kill(child.pid, signal.SIGCONT)
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def _paused_holder_resumes(paused_instance: str) -> None:
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    pause: list[Callable[[], None]] = []

    def before(call: str) -> None:
        if call == "renew" and pause:
            pause.pop()()

    paused = LeaseKeeper("w1", paused_instance, clock, LEASE)
    paused.stores = {"a": MemoryStateStore(table, before, name="P")}
    paused.claim("a", threading.Event())
    lease = paused.acquire("a", A0)
    assert lease is not None
    clock.t += LEASE / 3
    paused.renew_all()  # the claim and the lease move on
    clock.t += LEASE / 3
    successor = LeaseKeeper("w1", liveness.this_instance(), clock, LEASE)
    successor.stores = {"a": MemoryStateStore(table, name="S")}
    taken: list[tuple[int, int]] = []

    def stopped_for_two_leases() -> None:
        with pytest.raises(WorkerIdInUseError):
            successor.try_claim("a")  # P lives (stopped): no take-over, no margin
        clock.t += 2 * LEASE
        assert successor.try_claim("a")  # P's claim expired meanwhile
        again = successor.acquire("a", A0)
        assert again is not None, "the successor did not take the expired shard"
        stored = table.leases[A0]
        taken.append((stored.token, stored.expires_ms))

    pause.append(stopped_for_two_leases)
    paused.renew_all()  # the renewal of A0 is built, P stops, then it is sent
    assert taken, "the pause did not come between the renewal's build and its send"
    stored = table.leases[A0]
    assert (stored.token, stored.expires_ms) == taken[0], "P's late renewal moved S's lease"
    now = clock.now()
    assert lease.fence(clock, now) < now, "P may still start a write of A0"
    with pytest.raises(LeaseLostError):
        paused.stores["a"].save(A0, {"us-east-1": seq(1)})
    claim = table.workers["w1"]
    # A heartbeat P built before the stop (its expiry and time then) lands now.
    with pytest.raises(WorkerIdInUseError):
        paused.stores["a"].heartbeat(
            "w1",
            int((now - 2 * LEASE + LEASE) * 1000),
            instance=paused_instance,
            now_ms=int((now - 2 * LEASE) * 1000),
            order=10**6,
        )
    paused.renew_all()  # P's next tick: the claim is refused, nothing moves
    assert table.workers["w1"] == claim and claim[0] == successor.instance
    assert (table.leases[A0].token, table.leases[A0].expires_ms) == taken[0]
    assert A0 not in paused.leases or paused.leases[A0].until == 0.0


# -- a stop with several shards mid-page ----------------------------------------------------
@dataclass
class _EndlessStreams(FakeStreams):
    """Two shards a region, each with one new record at every read."""

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        return f"{shard_id}|{int(after or 0)}"

    def read(self, iterator: str, limit: int = 1000) -> Page:
        shard_id, after = iterator.split("|")
        n = int(after) + 1
        return Page([{"dynamodb": {"SequenceNumber": seq(n)}}], f"{shard_id}|{n}")


@dataclass
class _HeldPages(PageReplicator):
    """Every page that starts before the stop is held until the test lets it go; every
    page that starts after it (``stopping`` set) is counted per shard and goes at once."""

    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    gates: dict[str, threading.Event] = field(default_factory=dict)  # page thread -> gate
    after_stop: dict[str, int] = field(default_factory=dict)

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        name = threading.current_thread().name  # page-SHARD (runner/shard_pages.py)
        if self.stopping.is_set():
            with self.lock:
                self.after_stop[name] = self.after_stop.get(name, 0) + 1
        else:
            gate = threading.Event()
            with self.lock:
                self.gates[name] = gate
            gate.wait(30)
        return BatchResult({r: TargetResult(r, applied=len(records)) for r in regions or ()})

    def release(self, keep: str = "") -> None:
        with self.lock:
            for name, gate in self.gates.items():
                if name != keep:
                    gate.set()


def _poll(done: Callable[[], bool], what: str) -> None:
    for _ in range(3000):
        if done():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never came: {what}")


def test_a_stop_starts_no_page_beyond_each_shards_read_ahead_while_it_waits_for_one(
    tmp_path: Path,
) -> None:
    """Interleaving (the real Runner, Held and keeper over in-memory state tables; six
    shards in three regions, each with a page being written): the stop sets ``stopping``
    and drops the first shard (its stop event set), joining its thread until that page
    ends (up to its fence, 22.5 s). The other five shards' pages end meanwhile; their stop
    events are not set yet, so each reads and applies page after page, each of which the
    stop must wait for in turn (docs/operating/runner.md: "stops within a few seconds";
    six shards a page of P seconds each take 6 P, not P). Allowed: one page a shard after
    the stop began, the page read ahead of the one in flight, settled by ``flush``."""
    path = tmp_path / "c.toml"
    rewrite(path)
    clock = ManualClock()
    tables = {n: LeaseTable(clock) for n in NAMES}
    pages = _HeldPages()

    def connect(spec: RegionSpec) -> Region:
        store = MemoryStateStore(tables[spec.name], name=spec.name)
        return Region(spec, _EndlessStreams(spec.name), store, pages, NoParking())

    runner = reloading_runner(path, clock, connect)
    pages.stopping = runner.stopping
    stopping = threading.Thread(target=runner.shutdown, name="stop")
    try:
        runner.balance()
        owned = list(runner.owned.values())
        assert len(owned) == 2 * len(NAMES)
        _poll(lambda: len(pages.gates) == len(owned), "every shard's page being written")
        first = owned[0]
        stopping.start()
        _poll(first.stop.is_set, "the stop dropping the first shard")
        # The state the test is about: the stop waits for the first shard's page.
        assert first.thread.is_alive() and stopping.is_alive()
        pages.release(keep=f"page-{first.ref.shard_id}")
        others = owned[1:]
        _poll(
            lambda: all(
                not o.thread.is_alive() or pages.after_stop.get(f"page-{o.ref.shard_id}", 0) > 1
                for o in others
            ),
            "each other shard ended or started a second page after the stop",
        )
    finally:
        pages.release()
        if stopping.is_alive():
            stopping.join(60)
        elif not stopping.ident:
            runner.shutdown()
    assert not stopping.is_alive()
    assert max(pages.after_stop.values(), default=0) <= 1, pages.after_stop


# -- a clock step between a renewal's send and its answer, and a reload -------------------
@pytest.mark.parametrize(("before", "after"), [(0.0, 20.0), (20.0, 0.0), (3600.0, 0.0)])
def test_a_step_between_a_renewals_send_and_answer_then_a_shorter_lease_lands_no_late_write(
    before: float, after: float
) -> None:
    """Interleaving: w1 (wall clock ``before`` ahead of the true time) holds A0 (30 s
    lease); a tick sends its renewal, and before the answer NTP steps the clock to
    ``after`` (ahead, or back to the true time). Then a reload shortens the lease to 10 s
    (``restart_all``: the shard dropped, kept, and taken again through the same store,
    its request timeout now 2 s). w1 ticks three more times and dies; w2 (true clock)
    ticks and tries A0 every second. Checked on the table's timeline: w2 takes A0 only
    after every write the new lease's fence let w1 start has landed; no lease lives
    past its worker id's claim."""
    request = 2.0  # the shortened lease's request timeout (80% of its 2.5 s margin)
    true = ManualClock(1000.0)
    clock = SteppedClock(true, before)
    table = LeaseTable(true)
    steps: list[Callable[[], None]] = []

    def before_call(call: str) -> None:
        if call == "renew" and steps:
            steps.pop()()

    w1 = LeaseKeeper("w1", "p1", clock, LEASE)
    w1.stores = {"a": MemoryStateStore(table, before_call, name="w1")}
    w1.claim("a", threading.Event())
    first = w1.acquire("a", A0)
    assert first is not None
    true.t += w1.tick

    def step() -> None:
        clock.offset = after

    steps.append(step)
    w1.renew_all()
    # The state the test is about: the renewal was answered after the step.
    assert not steps and clock.offset == after
    w1.forget(A0)  # the reload: dropped with its thread ended, kept for the next round
    w1.lease_seconds = 10.0
    held = w1.acquire("a", A0)  # the round after the restart takes it again at once
    assert held is not None and held.span == 10.0
    w1.ended_kept(A0, first)
    w2 = LeaseKeeper("w2", "p2", true, 10.0)
    w2.stores = {"a": MemoryStateStore(table, name="w2")}
    w2.claim("a", threading.Event())
    may_land_until, taken_at = 0.0, None
    for second in range(120):
        now = clock.now()
        fence = held.fence(clock, now)  # the new thread's (the old one ended)
        if fence > now:  # a write may start until then, landing a request later
            may_land_until = max(may_land_until, fence - clock.offset + request)
        _check_claim(table, true)
        if w2.acquire("a", A0) is not None:
            taken_at = true.t
            break
        true.t += 1.0
        if second < 3:  # then w1 dies: its lease runs out, w2 takes the shard
            w1.renew_all()
        w2.renew_all()
    # The state the test is about: w2 took the shard w1 held after the step and reload.
    assert taken_at is not None, "w2 never took the shard"
    assert taken_at >= may_land_until, (taken_at, may_land_until)


def _check_claim(table: LeaseTable, true: ManualClock) -> None:
    now_ms = true.t * 1000
    for shard, stored in table.leases.items():
        _, claim = table.workers.get(stored.owner, ("", 0))
        if stored.expires_ms > now_ms:
            assert claim >= stored.expires_ms, f"{shard.shard_id}'s lease outlives its claim"


def test_a_split_page_re_read_after_its_iterator_expired_resumes_after_its_checkpoint() -> None:
    """Interleaving: page 1-10; SLOW misses the deadline at record 5 (1-4 applied), the
    others apply it all. SLOW's checkpoint is saved at 4 and it splits off at 4, halving
    the size; its first read after the backoff finds the iterator expired; the next takes a
    new one after 4 and applies 5-10 in pages of the halved size."""
    applied: dict[str, set[int]] = {}
    misses = [5]

    def process(
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
        miss = misses.pop() if misses else None
        for target in targets:
            failed = None
            for r in records:
                n = int(r["dynamodb"]["SequenceNumber"])
                if target == SLOW and miss is not None and n >= miss:
                    failed = seq(n)
                    break
                applied.setdefault(target, set()).add(n)
            error = DeadlineError("no time left to start this write") if failed else None
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        return BatchResult(results)

    stream = FakeStream({"s1": [record(n) for n in range(1, 11)]})
    checkpoints, clock = _CheckedCheckpoints(applied=applied), ManualClock()
    worker = _worker(stream, checkpoints, process, clock, 10)
    worker.step()
    # The state the test is about: SLOW split off at 4, saved there, the size halved.
    assert checkpoints.saved[REF][SLOW] == seq(4)
    slow = next(c for c in worker.cursors if c.targets == {SLOW})
    assert slow.position == seq(4)
    assert slow.size.limit == 5
    stream.expire_next = 1
    for _ in range(10):
        clock.t += 60  # past any backoff
        worker.step()
    assert stream.expire_next == 0, "the split cursor's read never met the expired iterator"
    assert ("s1", seq(4)) in stream.iterators_taken
    assert checkpoints.saved[REF] == dict.fromkeys(TARGETS, seq(10))
    assert applied[SLOW] == set(range(1, 11))
    assert not checkpoints.problems, checkpoints.problems
