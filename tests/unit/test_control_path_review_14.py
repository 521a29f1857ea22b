"""Review 14 of the control path (tests only, on main 71f1305, review 13's fix 31435e1
and its docs): ``Lease.stopping`` (``Held.stop`` fixes every fence before the first
``forget``; no renewal is sent for a stopping lease; an answer on a stopping or dropped one
raises only its ``ceiling``) attacked, then the whole path against
docs/concepts/guarantees.md (Timing and clocks) and docs/operating/runner.md.

Reproduced (strict xfails until fixed on main, each as its fix shape below: removing a fix
fails its test again; nothing lost, resurrected or landed late in either):

1. (very low; bounded by one fence, a tick's worth within the timing assumptions) A
   lowering moves a dropped shard's fence on. After a wall clock set back, the keeper's
   tick lowers every dropped lease the table holds further ahead than a lease from now
   (``_lower_dropped``), and its answer calls ``lease.stored``: ``held_until``, the
   fence's monotonic bound, goes from a lease after the last renewal *sent before the
   stop* to a lease after the lowering. The thread of a shard being dropped (its page
   out, or left to expire) writes on past the fence it had when the stop began, by the
   time between that renewal and the lowering: 11 s in the test (a clock 60 s ahead set
   back 10 s into the stop), 1.9 s with a 2 s step back within the assumptions. Against
   guarantees.md ("each cut at the fence it had when the stop began"; "a renewal never
   moves a dropped shard's lease"), runner.md (the same), and holdings.py's ``stopping``
   ("never its fence"). The table holds the lowered lease, so every write still lands
   before it; a page past its join is left to expire instead of released (the shard
   waits a lease). The same holds (reasoned) for a hand-over or a lost lease left to
   expire. Fix shape tried: ``_lower_dropped`` not calling ``stored`` (the fence keeps its
   bound, the claim and ``passes`` still move): passes, 3 runs of 3, and the clock-step,
   dropped-step, simulation, renewal-crossing, lease-step, deadline-check and review
   1/10/13 tests still pass
   (``test_a_lowering_after_a_clock_set_back_does_not_move_a_dropped_shards_fence``).
2. (low; liveness, bounded by a request timeout per due lease) A stop waits on a region
   that answers nothing once per lease when a keeper tick is out. ``Held.drop`` marks the
   region unreachable after the first release fails, and leaves the rest due; but the
   keeper's ticks go on until ``keeper.stop``, and a tick's ``_settle_dropped`` sends the
   release of every due lease of that region, one request each: a failure after the
   send (a read timeout) does not end the round (``_not_connected``), nor does the stop.
   ``keeper.stop`` joins that tick: with six leases in the region it waited for six more
   requests (30 s by default; up to two attempts each before ``keeper.stop``) instead of
   none (runner.md: "a region that answers none of them ... is waited on once"). Fix shape
   tried: ``_settle_dropped`` returning at a failed release once ``_stop`` is set: passes,
   3 of 3, and test_stopping_runner_releases.py, test_stop_after_restart_review.py,
   test_lease_keeper.py, test_ended_shard_release.py still pass
   (``test_a_stop_waits_on_a_region_that_answers_nothing_once_even_with_a_tick_out``).

Pinned here (passing), and what held:

- no renewal is sent for a stopping lease, not yet forgotten, while the claim and the
  region's other leases are renewed in the same tick; its expiry and fence stay (fails
  without the ``stopping`` check in ``_renew_one``);
- a renewal out when the stop fixed the fence, answered after, with the fence already
  passed (a page failed for want of time): the table holds it, ``ceiling`` is raised to
  it, ``until`` and the fence stay, ``on_late`` is not called for it (while the region's
  other late lease is woken), and after its ``forget`` the claim stays above it (fails
  with the answer moving ``until`` again).

Tried, reasoned, not pinned (no defect found):

- a renewal sent before ``fix_fences`` and answered after ``forget``: ``forget`` waits for
  ``_renew_one`` (the region's lock), so the answer comes before the drop's release or a
  later acquire (same coordinator thread, the lock again); stored after a release, it
  sets the ``ceiling`` of a Lease no longer kept; one whose answer was lost may land
  later: before the release (released after it) or after it (refused by the token), with
  ``ceiling`` and ``passes`` raised when it was sent (the claim and ``_still_left`` cover
  it); the same tick's retry finds the lease stopping or forgotten and sends nothing;
- a stopping lease never stays in ``keeper.leases``: ``Held.stop`` forgets every lease it
  marks, with nothing that raises in between; a restart's kept lease (stopping, dropped)
  taken again by the next round is replaced by a new Lease (not stopping, renewed; review
  13 pins it), and one not taken again is made due by ``settle_kept``;
- ``on_late`` only clears a cursor's backoff for its next step, and a stopping shard
  takes no next step (``run_shard`` flushes the pages in flight, which wait for no
  renewal): no page waits for a wake; a drop's join is bounded by the fence;
- a single ``Held.drop`` (hand-over, lost lease, reap) sets the stop event before
  ``forget``: a renewal answered in between moves the fence by up to a tick, after the
  drop began; its join then reads the moved fence (or the thread is left to expire,
  released after ``passes``). Not claimed by the docs (the claim is for a stop or reload);
- ``forget`` waiting on the region's lock behind a tick's requests: bounded by the
  tick's requests; a reload dropping every shard of a region finds them all stopping
  (no renewal is sent), one keeping some waits at most for their renewals;
- the claim is never below a lease the table may hold through the fix (``ceiling`` is
  raised before each send, set to the answer after; an answer on a released Lease
  changes nothing kept).

The control-plane simulations ran on fresh seeds from 5000000, none violated (each
module's ``run`` and ``violations``, seed by seed, at most 55 s a run): shard_sim.py 4792
(5000000-5004791), shard_sim_steps.py 4188 (5000000-5004187), the base simulation 5504,
clock steps 5419, dropped leases under steps 6201, late landings 4690. None of them checks
where a dropped page is cut (defect 1 is a timing claim, not a safety one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.errors import DeadlineError, UnreachableError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Deadline, TargetResult, deadline_at
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import Shard, ShardRef
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

from .fakes import PageReplicator
from .reloading import reloading_runner, rewrite
from .test_control_path_review_11 import _EndlessStreams, _poll
from .test_control_review import SteppingClock
from .test_runner_outage import NAMES, NoParking


@dataclass
class _PagesToTheSteadyFence(PageReplicator):
    """Each page writes for as long as its fence lets it (a slow target, a long page), as
    review 12's ``_PagesToTheFence``, but ``cut`` is on the monotonic reading: the fence
    each shard's last page ended at, as ``clock.elapsed()`` (shard id -> seconds), so
    that fences compare across a wall-clock step."""

    clock: SteppingClock
    lock: threading.Lock = field(default_factory=threading.Lock)
    entered: set[str] = field(default_factory=set)
    cut: dict[str, float] = field(default_factory=dict)

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        shard = threading.current_thread().name.removeprefix("page-")  # shard_pages.py
        with self.lock:
            self.entered.add(shard)
        while True:
            with self.lock:  # one reading of both clocks (the test steps them together)
                now, steady = self.clock.now(), self.clock.elapsed()
            fence = deadline_at(deadline, now)
            assert fence is not None
            if fence <= now:
                break
            threading.Event().wait(0.002)
        with self.lock:
            self.cut[shard] = steady + fence - now
        first = str(records[0]["dynamodb"]["SequenceNumber"])
        late = DeadlineError("no time left to start a write")
        return BatchResult(
            {r: TargetResult(r, failed_sequence=first, error=late) for r in regions or ()}
        )


def _six_stepping(
    path: Path, clock: SteppingClock, pages: _PagesToTheSteadyFence
) -> tuple[Runner, dict[str, LeaseTable]]:
    """The Runner over NAMES, two endless shards a region, every page by ``pages``."""
    rewrite(path)
    tables = {n: LeaseTable(clock) for n in NAMES}

    def connect(spec: RegionSpec) -> Region:
        store = MemoryStateStore(tables[spec.name], name=spec.name)
        return Region(spec, _EndlessStreams(spec.name), store, pages, NoParking())

    return reloading_runner(path, clock, connect), tables


def _steady_fence(clock: SteppingClock, lease: Lease) -> float:
    """``lease``'s fence now, on the monotonic reading."""
    now = clock.now()
    return clock.elapsed() + lease.fence(clock, now) - now


@pytest.mark.parametrize(("after", "back"), [(10.0, 60.0), (0.9, 2.0)], ids=["ahead", "within"])
def test_a_lowering_after_a_clock_set_back_does_not_move_a_dropped_shards_fence(
    tmp_path: Path, after: float, back: float
) -> None:
    """Interleaving (the real Runner, Held and keeper over in-memory state tables; six
    shards, each page writing for as long as its fence lets it): the leases are taken at
    1000 (until 1030, fence 1022.5 on both readings). 1 s later the stop begins:
    ``Held.stop`` fixes every fence and forgets every lease, and waits for the first
    shard's page. ``ahead``: 10 s later NTP sets the wall clock back 60 s (it had run
    ahead: the table holds 60 s more than a lease from now). The keeper's next tick lowers
    each dropped lease to a lease from now (``_settle_dropped``, ``_lower_dropped``): its
    ``until`` comes down, but the answer's ``stored`` moves ``held_until`` (the fence's
    monotonic bound) from the last renewal's sending (1000 + 30) to the lowering's (1011 +
    30): every fence moves on 11 s, and every page writes on 11 s past the fence it had
    when the stop began (guarantees.md: "each cut at the fence it had when the stop
    began"; "a renewal never moves a dropped shard's lease"; holdings.py ``stopping``:
    "never its fence"). ``within``: the same with a step back of 2 s 0.9 s later, within
    the timing assumptions (< 2.5 s): every page writes on 1.9 s past its fence. Nothing
    lands late: the table holds the lowered lease, and each write starts a margin before
    it. (Passes with ``_lower_dropped`` not calling ``stored``: tried, 3 runs of 3.)"""
    path, clock = tmp_path / "c.toml", SteppingClock()
    pages = _PagesToTheSteadyFence(clock)
    runner, _tables = _six_stepping(path, clock, pages)
    stopping = threading.Thread(target=runner.shutdown, name="stop")
    try:
        runner.balance()
        owned = {o.ref: o for o in runner.owned.values()}
        assert len(owned) == 2 * len(NAMES)
        _poll(lambda: len(pages.entered) == len(owned), "every shard's page being written")
        clock.t += 1.0
        fences = {o.ref.shard_id: _steady_fence(clock, o.lease) for o in owned.values()}
        stopping.start()
        _poll(
            lambda: all(o.lease.dropped for o in owned.values()),
            "the stop forgetting every lease (its first drop waits for a page)",
        )
        with pages.lock:
            clock.t += after
        with pages.lock:  # NTP sets the wall clock back: the monotonic one goes on
            clock.t -= back
            clock.stepped -= back
        # The state the test is about: the stop began, every page is still out.
        assert stopping.is_alive() and not pages.cut
        runner.keeper.renew_all()  # the keeper's next tick
        began = clock.elapsed()
        while stopping.is_alive() and clock.elapsed() < began + 600:
            with pages.lock:
                clock.t += 0.5
            threading.Event().wait(0.002)
    finally:
        with pages.lock:
            clock.t += 600
        stopping.join(60)
    assert not stopping.is_alive()
    _poll(lambda: set(fences) <= set(pages.cut), "every shard's page cut")
    late = {s: round(pages.cut[s] - f, 1) for s, f in fences.items() if pages.cut[s] > f + 1e-6}
    assert not late, f"pages written on past their fence at the stop (s): {late}"


# -- review 13's fix, at the keeper (passing) -----------------------------------------------
A0, A1 = (ShardRef("Orders", "arn:a/stream/Orders", f"a-{n}") for n in range(2))


def _keeper_holding_a0_a1(
    before: Callable[[str], None] = lambda _call: None,
) -> tuple[ManualClock, LeaseTable, LeaseKeeper, list[ShardRef]]:
    """At 1000 s, w1's keeper (30 s leases) holds its claim, a-0 and a-1 until 1030 in
    region a; ``before`` runs before each request of its store; the shards it calls
    ``on_late`` for are listed."""
    clock = ManualClock(1000.0)
    table = LeaseTable(clock)
    late: list[ShardRef] = []
    keeper = LeaseKeeper("w1", "p", clock, 30.0, on_late=late.append)
    keeper.stores = {"a": MemoryStateStore(table, before, name="a")}
    assert keeper.acquire("a", A0) is not None and keeper.acquire("a", A1) is not None
    return clock, table, keeper, late


def test_a_stopping_lease_is_not_renewed_while_the_others_and_the_claim_are() -> None:
    """(Fails when ``_renew_one`` renews a stopping lease.) ``Held.stop`` has fixed a-0's
    fence (``fix_fences``) and not forgotten it yet: a tick renews the claim and a-1, and
    sends nothing for a-0: its expiry in the table and its fence stay where they were."""
    clock, table, keeper, late = _keeper_holding_a0_a1()
    a0, a1 = keeper.leases[A0], keeper.leases[A1]
    clock.t += 5.0
    fence = a0.fence(clock, clock.now())
    keeper.fix_fences([a0])
    assert keeper.leases[A0] is a0 and a0.stopping and not a1.stopping  # the state
    keeper.renew_all()
    assert table.leases[A0].expires_ms == 1030_000, "a renewal was sent for a stopping lease"
    assert table.leases[A1].expires_ms == 1035_000 and a1.until == 1035.0
    assert table.workers["w1"][1] >= 1035_000
    assert a0.until == 1030.0 and a0.fence(clock, clock.now()) == fence and not late


def test_a_renewal_answered_on_a_stopping_lease_raises_its_ceiling_only_and_wakes_no_page() -> None:
    """(Fails when the answer moves ``until`` again.) a-0's fence (1022.5) has passed and
    its renewal is out (a page failed for want of time waits for it: ``on_late``) when the
    stop fixes its fence (``fix_fences`` runs while the request is in the table). The
    renewal is kept (the table holds 1053): a-0's ``until`` and fence stay, ``on_late`` is
    not called (its thread is told to stop: no step waits for a wake), its ``ceiling`` is
    what the table holds, and the claim stays above it after its ``forget``."""
    stop: list[LeaseKeeper] = []

    def fix_a0(call: str) -> None:
        if call == "renew" and stop:
            keeper = stop.pop()
            keeper.fix_fences([keeper.leases[A0]])

    clock, table, keeper, late = _keeper_holding_a0_a1(fix_a0)
    a0 = keeper.leases[A0]
    clock.t += 23.0  # past a-0's fence (1022.5), before its expiry (1030)
    assert a0.fence(clock, clock.now()) < clock.now()
    stop.append(keeper)
    keeper.renew_all()
    assert not stop and a0.stopping  # the state: fixed while its renewal was out
    assert table.leases[A0].expires_ms == 1053_000  # sent before the stop: kept
    assert a0.until == 1030.0 and a0.fence(clock, clock.now()) < clock.now()
    assert a0.ceiling == 1053.0 and late == [A1], late
    keeper.forget(A0)
    clock.t += 5.0
    keeper.renew_all()
    assert table.workers["w1"][1] >= 1053_000, "the claim came below a-0's stored lease"


# -- a stop against a region that answers nothing, with a tick out -------------------------
@dataclass
class _Shards(_EndlessStreams):
    """``count[region]`` endless shards in each region (review 11's ``_EndlessStreams``)."""

    count: dict[str, int] = field(default_factory=dict)

    def shards(self, arn: str) -> list[Shard]:
        n = self.count.get(self.region, 0)
        return [Shard(f"{self.region}-{i}", None, "1", None) for i in range(n)]


@dataclass
class _HoldC0(PageReplicator):
    """Every page is applied at once, but c-0's, which is held until ``go`` is set."""

    go: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)

    def page(
        self,
        records: Sequence[Mapping[str, Any]],
        regions: Collection[str] | None,
        deadline: Deadline,
    ) -> BatchResult:
        if threading.current_thread().name == "page-c-0":
            self.held.set()
            self.go.wait(30)
        return super().page(records, regions, deadline)


@dataclass
class _Unanswering:
    """Region b's state table once ``down``: every request is sent and its answer never
    comes (each costs the request timeout: a read timeout). The first release the
    keeper's tick sends (``lease-renewal-b``) waits until ``go`` is set; ``after_stop``
    counts the releases sent once the keeper is stopping (``stopping``)."""

    stopping: Callable[[], bool] = lambda: False
    down: bool = False
    out: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    after_stop: int = 0

    def __call__(self, call: str) -> None:
        if not self.down:
            return
        ticking = threading.current_thread().name == "lease-renewal-b"
        if call == "release" and ticking and not self.out.is_set():
            self.out.set()
            self.go.wait(30)
        if call == "release" and self.stopping():
            self.after_stop += 1
        raise UnreachableError(f"{call} in b: read timed out", region="b", request_sent=True)


def test_a_stop_waits_on_a_region_that_answers_nothing_once_even_with_a_tick_out(
    tmp_path: Path,
) -> None:
    """Interleaving (the real Runner, Held and keeper over in-memory state tables): six
    shards in region b, one in c. b's table stops answering (every request is sent and
    times out: a read timeout, ``request_sent``) and the runner is stopped. The stop drops
    b-0 (its release tried four times, then b counted unreachable: the docs' one wait) and
    b-1..b-5 (left to run out, due for release), then waits for c-0's page. Meanwhile
    the keeper's tick for b (every 5 s; the stop ends the ticks only at ``keeper.stop``)
    sends the due releases of b's six leases one by one: a failure after the send says
    nothing of the next one (``_not_connected``), so none ends the round. The stop's
    ``keeper.stop`` waits for that tick to end: with the tick's first release still out
    when it begins, it waits for one more request per lease of b (six request timeouts,
    30 s by default; 60 with both attempts) instead of none (docs/operating/runner.md: "a
    region that answers none of them keeps its other leases until they expire, and is
    waited on once"). A stop longer than the orchestrator's grace period ends in SIGKILL;
    the leases run out (nothing is lost)."""
    path, clock = tmp_path / "c.toml", ManualClock()
    rewrite(path)
    tables = {n: LeaseTable(clock) for n in NAMES}
    pages, b = _HoldC0(), _Unanswering()

    def connect(spec: RegionSpec) -> Region:
        hook = b if spec.name == "b" else (lambda _call: None)
        store = MemoryStateStore(tables[spec.name], hook, name=spec.name)
        streams = _Shards(spec.name, count={"b": 6, "c": 1})
        return Region(spec, streams, store, pages, NoParking())

    runner = reloading_runner(path, clock, connect)
    b.stopping = runner.keeper._stop.is_set
    stopping = threading.Thread(target=runner.shutdown, name="stop")
    tick: threading.Thread | None = None
    try:
        runner.balance()
        assert sorted(r.shard_id for r in runner.owned) == [*(f"b-{i}" for i in range(6)), "c-0"]
        _poll(pages.held.is_set, "c-0's page being written")
        b.down = True
        runner.stop_soon()
        stopping.start()
        _poll(lambda: not runner.owned, "the stop dropping b's shards and waiting for c-0's")
        # The state the test is about: b counted unreachable, its six leases due.
        assert not runner.reach.is_up("b") and stopping.is_alive()
        gone = [lease for lease in runner.keeper._gone.values() if lease.region == "b"]
        assert len(gone) == 6 and all(lease.release_due for lease in gone)
        runner.keeper._tick()  # the keeper's tick, 5 s on
        tick = runner.keeper._out["b"]
        _poll(b.out.is_set, "the tick's first release of a b lease out")
        pages.go.set()
        _poll(runner.keeper._stop.is_set, "the stop at keeper.stop, the tick still out")
        b.go.set()
        stopping.join(30)
        assert not stopping.is_alive()
    finally:
        pages.go.set()
        b.go.set()
        stopping.join(30)
        if tick is not None:
            tick.join(30)
    assert b.after_stop <= 1, f"keeper.stop waited for {b.after_stop} requests to b"
