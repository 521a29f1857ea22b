"""Adversarial review of the deadline check (``core.ports.deadline_passed``).

The check was two-sided (commit 283bcb1): it read a lease's fence (which read the wall
clock itself) before and after its own wall reading, and a set-back then a step ahead
again between the readings beat it (review 8). It now takes one wall reading and hands it
to the fence (``Lease.fence``), which turns its monotonic bound into wall time against that
very reading. Each test scripts the wall clock's steps by reading (the monotonic reading
never steps) and runs the real ``Lease.fence``, ``deadline_passed`` and ``deadline_of``."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import pytest

from dynamodb_replicator.awslambda.handler import MIN_MARGIN_S, deadline_of
from dynamodb_replicator.core.ports import deadline_at, deadline_passed
from dynamodb_replicator.runner.holdings import Lease

LEASE = 30.0
MARGIN = 7.5
STEP = 3600.0


@dataclass
class ScriptedClock:
    """True time ``t`` (the monotonic reading) plus a wall offset; ``steps`` maps the
    index of a wall reading (0-based) to the offset from that reading on, and ``hooks``
    runs a callable just before a reading (a renewal landing between two readings)."""

    t: float
    offset: float = 0.0
    steps: dict[int, float] = field(default_factory=dict)
    hooks: dict[int, object] = field(default_factory=dict)
    reads: int = 0

    def now(self) -> float:
        i = self.reads
        self.reads += 1
        hook = self.hooks.get(i)
        if callable(hook):
            hook()
        if i in self.steps:
            self.offset = self.steps[i]
        return self.t + self.offset

    def elapsed(self) -> float:
        return self.t

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return stop is not None and stop.is_set()


def renewed_at(t: float, offset: float) -> Lease:
    """A lease renewed (answered) at true time ``t`` on a wall clock ``offset`` ahead:
    ``until`` in that wall frame, ``passes`` and ``held_until`` on the monotonic reading."""
    lease = Lease("eu-west-1", until=t + offset + LEASE, margin=MARGIN, span=LEASE)
    lease.may_store(lease.until, t + offset, t)
    lease.stored(lease.until, t + offset, t)
    return lease


# The two-sided check's readings: 0 the fence read before (its wall reading), 1 the
# check's own clock reading, 2 the fence read after. The one-reading check makes 0 only.
BEFORE, CLOCK, AFTER = 0, 1, 2
OFFSETS = (-STEP, 0.0, STEP, 2 * STEP)


def test_a_clock_set_back_then_ahead_between_the_readings_refuses_a_write_past_the_fence() -> None:
    """Interleaving: w1's wall clock ran an hour ahead and the lease was renewed there
    (``until`` an hour ahead, ``passes`` 30 s on, monotonic fence at t0+22.5). At
    t0+25 (past the fence) the writer checks: the clock is read ahead, NTP sets it back
    right after (where the two-sided check read the clock), and a flapping source puts it
    ahead again (where it read the fence a second time). The two-sided check compared a
    reading in the true frame with two fences stretched by the hour: "not passed". The
    check now reads the wall clock once, and the fence is computed against that reading.
    Mutation: ``Lease.fence`` taking a wall reading of its own (``clock.now()``) instead
    of the check's brings the defect back."""
    t0 = 1000.0
    lease = renewed_at(t0, STEP)
    clock = ScriptedClock(t0 + 25.0, offset=STEP, steps={CLOCK: 0.0, AFTER: STEP})

    def fence(now: float) -> float:
        return lease.fence(clock, now)

    assert clock.t >= lease.passes - MARGIN  # reached: past the monotonic fence
    assert deadline_passed(fence, clock)
    assert clock.reads == 1  # one wall reading: no second one for a step to land before


@pytest.mark.parametrize("renewed_offset", OFFSETS)
def test_no_sequence_of_wall_steps_lets_a_write_start_past_the_monotonic_fence(
    renewed_offset: float,
) -> None:
    """Every sequence of wall offsets at the first four readings (each an hour back,
    true, an hour or two ahead), with the lease renewed in any of those frames: past the
    monotonic fence the check says "passed"; before it and before the wall deadline (no
    step), "not passed"."""
    t0 = 1000.0
    for offsets in itertools.product(OFFSETS, repeat=4):
        lease = renewed_at(t0, renewed_offset)
        clock = ScriptedClock(t0 + 25.0, steps=dict(enumerate(offsets)))

        def fence(now: float, lease: Lease = lease, clock: ScriptedClock = clock) -> float:
            return lease.fence(clock, now)

        assert clock.t >= lease.passes - MARGIN
        assert deadline_passed(fence, clock), (renewed_offset, offsets)
    calm = renewed_at(t0, 0.0)
    before = ScriptedClock(t0 + 20.0)
    assert not deadline_passed(lambda now: calm.fence(before, now), before)


@pytest.mark.parametrize("step", [STEP, -STEP])
@pytest.mark.parametrize("at", [BEFORE, CLOCK, AFTER, AFTER + 1])
def test_one_wall_step_at_any_reading_never_lets_a_write_start_past_the_fence(
    step: float, at: int
) -> None:
    """What held: one step either way, landing before any of the three wall readings (or
    after all of them), with the lease renewed ahead or in the true frame, never gives
    "not passed" once the monotonic fence has passed."""
    t0 = 1000.0
    for renewed_offset in (0.0, STEP):
        for start in (0.0, STEP):
            lease = renewed_at(t0, renewed_offset)
            clock = ScriptedClock(t0 + 25.0, offset=start, steps={at: start + step})

            def fence(now: float, lease: Lease = lease, clock: ScriptedClock = clock) -> float:
                return lease.fence(clock, now)

            assert clock.t >= lease.passes - MARGIN
            assert deadline_passed(fence, clock), (renewed_offset, start, at, step)


def test_in_normal_running_a_write_starts_until_the_fence_and_none_at_it() -> None:
    """What held: no steps, no renewal: the check says "not passed" just before the
    fence and "passed" at it, as the single reading did before the commit."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)
    fence_at = t0 + LEASE - MARGIN
    before = ScriptedClock(fence_at - 1e-3)
    assert not deadline_passed(lambda now: lease.fence(before, now), before)
    at = ScriptedClock(fence_at)
    assert deadline_passed(lambda now: lease.fence(at, now), at)


@pytest.mark.parametrize("inside", [False, True])
@pytest.mark.parametrize(("late", "renewed", "passed"), [(25.0, False, True), (25.0, True, False)])
def test_a_renewal_answered_around_the_reading_moves_the_fence_only_once_stored(
    late: float, renewed: bool, passed: bool, inside: bool
) -> None:
    """What held: past the old fence the write is refused (it is left for the keeper's
    ``on_late``), unless a renewal was answered (stored in the table) before the fence is
    computed, just before the check's wall reading or between it and the fence: the
    renewed lease then covers a write started now."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)

    def renew() -> None:
        if renewed:
            again = renewed_at(t0 + late, 0.0)
            lease.may_store(again.until, t0 + late, t0 + late)
            lease.stored(again.until, t0 + late, t0 + late)
            lease.until = lease.ceiling = again.until

    clock = ScriptedClock(t0 + late, hooks={} if inside else {BEFORE: renew})

    def fence(now: float) -> float:
        if inside:
            renew()
        return lease.fence(clock, now)

    assert deadline_passed(fence, clock) is passed
    # reached: renewed around the reading, or not at all
    assert lease.until == (t0 + late + LEASE if renewed else t0 + LEASE)


@pytest.mark.parametrize("inside", [False, True])
def test_a_lowering_around_the_reading_refuses_at_the_lowered_fence(inside: bool) -> None:
    """What held: a fence that goes down (the lease found lost: ``until`` 0) before the
    check's wall reading, or between it and the fence, refuses the write at once."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)

    def lose() -> None:
        lease.until = 0.0

    clock = ScriptedClock(t0 + 1.0, hooks={} if inside else {BEFORE: lose})
    calls: list[int] = []

    def fence(now: float) -> float:
        calls.append(1)
        if inside:
            lose()
        return lease.fence(clock, now)

    assert deadline_passed(fence, clock)
    assert lease.until == 0.0 and len(calls) == 1  # reached: lowered around the reading


def test_a_float_deadline_is_one_reading_against_a_fixed_wall_time() -> None:
    """What held: a float deadline is compared with one wall reading (no fence to read
    twice); None never passes."""
    clock = ScriptedClock(1000.0)
    assert not deadline_passed(1000.5, clock)
    assert deadline_passed(1000.0, clock)
    assert not deadline_passed(None, clock)
    assert clock.reads == 2  # None reads no clock


@dataclass
class Context:
    left_ms: float

    def get_remaining_time_in_millis(self) -> float:
        return self.left_ms


def test_lambdas_deadline_is_a_float_fixed_at_the_invocations_start() -> None:
    """What held: ``deadline_of`` gives a float (the float path: one wall reading per
    check), keeping back the larger of 1 s and a tenth of the time left, and the
    lifetime; no context method, no deadline."""
    now = 1000.0
    deadline = deadline_of(Context(60_000.0), now, lifetime=5.0)
    assert deadline == now + 60.0 - 6.0 - 5.0
    assert deadline_at(deadline, now) == deadline
    assert deadline_of(Context(5_000.0), now) == now + 5.0 - MIN_MARGIN_S
    assert deadline_of(object(), now) is None
    assert deadline is not None
    assert not deadline_passed(deadline, ScriptedClock(deadline - 1e-3))
    assert deadline_passed(deadline, ScriptedClock(deadline))


@pytest.mark.xfail(
    strict=True,
    reason="limit: Lambda's float deadline is wall time fixed at the start; a set-back "
    "after it lets a write start past the invocation's real end (liveness: the batch "
    "times out and is retried; the runtime's remaining time reads the wall clock too)",
)
def test_lambdas_deadline_refuses_a_write_past_the_invocations_end_after_a_set_back() -> None:
    """Interleaving: the invocation has 60 s left at t0; the deadline is fixed in wall
    time. At t0+59 (past it on the monotonic reading) the wall clock is set back a
    minute: the float check says "not passed"."""
    t0 = 1000.0
    deadline = deadline_of(Context(60_000.0), t0, lifetime=5.0)
    assert deadline is not None
    clock = ScriptedClock(t0 + 59.0, offset=-60.0)
    assert clock.t > deadline  # reached: past the deadline on the monotonic reading
    assert deadline_passed(deadline, clock)


@dataclass
class Readings:
    """A clock whose wall and monotonic readings are given as they are (no sum)."""

    wall: float
    steady: float

    def now(self) -> float:
        return self.wall

    def elapsed(self) -> float:
        return self.steady

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return False


def test_the_monotonic_fence_is_exact_against_an_epoch_sized_wall_reading() -> None:
    """The fence's monotonic part, added to a wall reading of today's size (where a float
    is about 0.2 us coarse), lets no write start once the monotonic fence is reached (the
    wall deadline far off: renewed an hour ahead), and refuses none a microsecond before
    it. Mutation: summing ``now + held_until - elapsed`` left to right (the wall-sized sum
    rounded first) says "not passed" exactly at the fence, at these readings."""
    wall, passes = 1_613_047_235.5476644, 918_992.5709849596  # found by a random search
    lease = Lease("eu-west-1", until=wall + STEP, margin=MARGIN, span=LEASE, held_until=passes)
    fence_at = passes - MARGIN
    for steady, passed in ((fence_at, True), (fence_at + 1e-9, True), (fence_at - 1e-6, False)):
        clock = Readings(wall, steady)

        def fence(now: float, clock: Readings = clock) -> float:
            return lease.fence(clock, now)

        assert deadline_passed(fence, clock) is passed, steady
