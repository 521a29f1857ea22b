"""Adversarial review of the two-sided deadline check (commit 283bcb1,
``core.ports.deadline_passed``).

The check reads a callable deadline (a lease's fence, ``Lease.fence``, which reads the wall
and monotonic clocks itself) before and after the wall clock and compares the clock with
the smaller. Each test scripts the wall clock's steps by reading (the monotonic reading
never steps) and runs the real ``Lease.fence``, ``deadline_passed`` and ``deadline_of``."""

from __future__ import annotations

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
    ``until`` in that wall frame, ``passes`` on the monotonic reading."""
    lease = Lease("eu-west-1", until=t + offset + LEASE, margin=MARGIN, span=LEASE)
    lease.may_store(lease.until, t + offset, t)
    return lease


# Reading 0 is the fence read before (its wall reading), 1 the check's own clock reading,
# 2 the fence read after.
BEFORE, CLOCK, AFTER = 0, 1, 2


@pytest.mark.xfail(
    strict=True,
    reason="defect: a set-back between the first fence and the clock reading, then a step "
    "ahead again before the second fence, stretches both fences: a write starts past "
    "the monotonic fence (docs claim only one set-back is covered; a flapping clock "
    "is two steps)",
)
def test_a_clock_set_back_then_ahead_between_the_readings_refuses_a_write_past_the_fence() -> None:
    """Interleaving: w1's wall clock ran an hour ahead and the lease was renewed there
    (``until`` an hour ahead, ``passes`` 30 s on, monotonic fence at t0+22.5). At
    t0+25 (past the fence) the writer checks: the first fence is read ahead (stretched by
    the hour), NTP sets the clock back before the check's clock reading, and a flapping
    source puts it ahead again before the second fence. Both fences are then read in the
    ahead frame and compared with a reading in the true one: "not passed"."""
    t0 = 1000.0
    lease = renewed_at(t0, STEP)
    clock = ScriptedClock(t0 + 25.0, offset=STEP, steps={CLOCK: 0.0, AFTER: STEP})

    def fence() -> float:
        return lease.fence(clock)

    assert clock.t >= lease.passes - MARGIN  # reached: past the monotonic fence
    assert deadline_passed(fence, clock)


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

            def fence(lease: Lease = lease, clock: ScriptedClock = clock) -> float:
                return lease.fence(clock)

            assert clock.t >= lease.passes - MARGIN
            assert deadline_passed(fence, clock), (renewed_offset, start, at, step)


def test_in_normal_running_a_write_starts_until_the_fence_and_none_at_it() -> None:
    """What held: no steps, no renewal: the check says "not passed" just before the
    fence and "passed" at it, as the single reading did before the commit."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)
    fence_at = t0 + LEASE - MARGIN
    before = ScriptedClock(fence_at - 1e-3)
    assert not deadline_passed(lambda: lease.fence(before), before)
    at = ScriptedClock(fence_at)
    assert deadline_passed(lambda: lease.fence(at), at)


@pytest.mark.parametrize(("late", "passed"), [(25.0, True), (20.0, False)])
def test_a_renewal_landing_between_the_readings_refuses_only_past_the_old_fence(
    late: float, passed: bool
) -> None:
    """What held: a renewal answered between the readings moves the fence up (the second
    reading); the smaller, old one decides. Past it the write is refused (it is left for
    the keeper's ``on_late``); before it the write starts."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)

    def renew() -> None:
        renewed = renewed_at(t0 + late, 0.0)
        lease.may_store(renewed.until, t0 + late, t0 + late)
        lease.until = lease.ceiling = renewed.until

    clock = ScriptedClock(t0 + late, hooks={CLOCK: renew})
    assert deadline_passed(lambda: lease.fence(clock), clock) is passed
    assert lease.until == t0 + late + LEASE  # reached: renewed between the readings


@pytest.mark.parametrize("second", [False, True])
def test_a_lowering_between_the_readings_refuses_at_the_lowered_fence(second: bool) -> None:
    """What held: a fence that goes down between the readings (the lease found lost:
    ``until`` 0), before the clock reading or after it (before the second fence), refuses
    the write at once."""
    t0 = 1000.0
    lease = renewed_at(t0, 0.0)

    def lose() -> None:
        lease.until = 0.0

    clock = ScriptedClock(t0 + 1.0, hooks={} if second else {CLOCK: lose})
    calls: list[int] = []

    def fence() -> float:
        calls.append(1)
        if second and len(calls) == 2:
            lose()
        return lease.fence(clock)

    assert deadline_passed(fence, clock)
    assert lease.until == 0.0 and len(calls) == 2  # reached: lowered between the readings


def test_a_float_deadline_is_one_reading_against_a_fixed_wall_time() -> None:
    """What held: a float deadline is compared with one wall reading (no fence to read
    twice), as before the commit; None never passes."""
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
    assert deadline_at(deadline) == deadline
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
