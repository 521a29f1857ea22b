"""The control-plane simulation (test_control_plane_simulation.py) with a wall clock per
process that steps, forward and back, within the timing assumptions
(docs/concepts/guarantees.md: the workers' clocks differ by less than the margin less the
request time, 1.5 s here). Each process judges leases, deadlines and claims by its own
clock (its requests carry its time); the table's timeline and the writes' landings are
on the true one. A step back makes renewals and heartbeats lower what is stored (they are
applied in the order sent, not by expiry), which the keeper must do without ever
believing in more lease than the table holds, and without a lease outliving its claim.
Checked as in the simulation: no write of a shard lands after another process acquired
it, and no live lease outlives its worker id's claim. A write drawn to start at the
deadline is checked against the deadline when drawn, and starts even if a renewal lowered
it since (the runner would refuse it then): more writes than the runner's, not fewer.
``SIM_SEED=N`` replays one seed."""

from __future__ import annotations

import threading

from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import MemoryStateStore

from .test_control_plane_simulation import (
    LEASE,
    REQUEST,
    SHARDS,
    Process,
    Simulation,
    Write,
    seeded,
)

SPREAD = 0.7  # each clock within 0.7 s of the true time: any two within 1.4 s < 1.5 s


class SteppedClock:
    """A process's clock: the true time plus an ``offset`` the simulation steps. Its
    monotonic reading does not step (as SystemClock's ``elapsed``)."""

    def __init__(self, true: ManualClock, offset: float) -> None:
        self.true, self.offset = true, offset

    def now(self) -> float:
        return self.true.t + self.offset

    def elapsed(self) -> float:
        return self.true.t

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return self.true.wait(seconds, stop)


class SteppingSimulation(Simulation):
    def __init__(self, seed: int) -> None:
        self.clocks: dict[str, SteppedClock] = {}
        self.steps_back = 0
        super().__init__(seed)

    def start(self, worker: str) -> None:
        self.count += 1
        name = f"{worker}#{self.count}"
        clock = self.clocks[name] = SteppedClock(self.clock, self.rng.uniform(-SPREAD, SPREAD))
        keeper = LeaseKeeper(worker, name, clock, LEASE)
        keeper.stores = {"r": MemoryStateStore(self.table, self._request, name=name)}
        self.processes.append(Process(name, worker, keeper))

    def step(self) -> None:
        if self.rng.random() < 0.2:  # a step of one process's clock, either way
            clock = self.clocks[self.rng.choice(self.processes).name]
            offset = self.rng.uniform(-SPREAD, SPREAD)
            self.steps_back += offset < clock.offset
            clock.offset = offset
        super().step()

    def _write(self, process: Process) -> None:
        clock = self.clocks[process.name]
        for shard, lease in list(process.keeper.leases.items()):
            now = clock.now()
            if now > lease.fence(clock, now) or shard not in process.terms:
                continue  # the shard thread asks the deadline, on its own clock
            lands = self._lands(clock, lease)
            self.in_flight.append(Write(lands, shard, process.name, process.terms[shard]))

    def _lands(self, clock: SteppedClock, lease: Lease) -> float:
        """When a write of ``lease`` checked now lands, on the true time: it starts now or
        at the deadline (at the last moment), and takes up to a request. A deadline
        further than a lease ahead (stored while the clock ran ahead, not lowered yet:
        test_control_plane_dropped_steps.py) starts it now: the thread checks it again
        at each write, and by the next tick it is lowered."""
        now = clock.now()
        fence = lease.fence(clock, now)  # as held.py asks it
        last = fence if fence <= now + LEASE else now
        started = last if self.rng.random() < 0.5 else now
        return started - clock.offset + REQUEST * self.rng.uniform(0.8, 1.0)


def test_no_write_lands_after_its_shard_passed_on_when_clocks_step_both_ways() -> None:
    runs, takeovers, back = 0, 0, 0
    for simulation in seeded(SteppingSimulation):
        assert isinstance(simulation, SteppingSimulation)
        runs += 1
        takeovers += sum(e == "acquire" for _, e, _, _ in simulation.table.timeline)
        back += simulation.steps_back
    # It reached the states it is about: clocks stepped back, shards changed hands.
    assert runs >= 1 and back > runs and takeovers > runs * len(SHARDS)
