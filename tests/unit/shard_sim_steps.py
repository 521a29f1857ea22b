"""tests/unit/shard_sim.py with a wall clock per process that steps, forward and back,
within the timing assumptions (docs/concepts/guarantees.md, "Timing and clocks": the
workers' clocks differ by less than the margin less the request time; 7 s - 6 s here, so
each clock stays within 0.45 s of the true time), while reloads change the lease duration
(28, 30, 40 s) and drop shards. Each process judges its leases, fences and claims by its
own clock (its requests carry its time); the table, the target and the writes' landings
are on the true one. A write's fence is asked on the writer's clock twice, as a shard
thread does: when it is drawn (``_write``) and when it starts (``_lowered_under``, at
that moment's reading, after any step or renewal since). The checks are shard_sim.py's.
"""

from __future__ import annotations

import contextlib
import heapq

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.testing.memory_leases import MemoryStateStore

from .shard_sim import LEASES, RECORDS, REQUEST, Held, Process, ShardSimulation, Write
from .test_control_plane_clock_steps import SteppedClock

SPREAD = 0.45  # any two clocks within 0.9 s < the 1 s the smallest margin leaves


class SteppingShardSimulation(ShardSimulation):
    def __init__(self, seed: int, steps: int) -> None:
        self.clocks: dict[str, SteppedClock] = {}
        self.steps_back = 0
        self.lease_changes = 0
        super().__init__(seed, steps)

    def start(self, worker: str) -> None:
        name = f"{worker}#{len(self.processes) + 1}"
        offset = self.rng.uniform(-SPREAD, SPREAD)
        clock = self.clocks[name] = SteppedClock(self.clock, offset)
        keeper = LeaseKeeper(worker, name, clock, self.rng.choice(LEASES))
        keeper.dead = self.killed.__contains__
        keeper.stores = {"r": MemoryStateStore(self.table, self._request, name=name)}
        self.processes.append(Process(name, worker, keeper))

    def step(self) -> None:
        if self.faults and self.rng.random() < 0.2:  # one process's clock steps, either way
            clock = self.clocks[self.rng.choice(self.processes).name]
            offset = self.rng.uniform(-SPREAD, SPREAD)
            self.steps_back += offset < clock.offset
            clock.offset = offset
        super().step()

    def _reload(self, process: Process) -> None:
        before = process.keeper.lease_seconds
        super()._reload(process)
        self.lease_changes += process.keeper.lease_seconds != before

    def _fence_now(self, process: str, held: Held | Write) -> tuple[float, float]:
        """(now, fence) on ``process``'s clock, the fence as ``apply_page`` asks it."""
        clock = self.clocks[process]
        lease = held.lease
        assert lease is not None
        now = clock.now()
        return now, lease.fence(clock, now)

    def _write(self, process: Process) -> None:
        clock = self.clocks[process.name]
        for shard, held in process.held.items():
            if held.write is not None or held.dropping or held.next_seq > RECORDS:
                continue
            now, fence = self._fence_now(process.name, held)
            if now > fence:
                continue  # asked before each write: no time left
            late = self.faults and self.rng.random() < 0.5
            # At the last moment (true time) when the fence is near, else now.
            near = fence <= now + held.lease.span
            started = fence - clock.offset if late and near else self.clock.t
            rec = self.records[shard][held.next_seq - 1]
            lands = started + REQUEST * self.rng.uniform(0.5 if self.faults else 0.0, 1.0)
            held.write = Write(rec, process.name, held.term, started, lands, held.lease)
            for when, kind in ((started, "start"), (lands, "land")):
                self.n += 1
                heapq.heappush(self.events, (when, self.n, kind, held.write))

    def _lowered_under(self, write: Write) -> bool:
        """The writer asks the fence when the write starts, on its clock as it reads then:
        a step back, a lowering, or a renewal's answer since it was drawn may have moved
        it. A lease found lost (``until`` 0) still starts it (shard_sim.py)."""
        lease = write.lease
        if lease is None or lease.until == 0.0:
            return False
        now, fence = self._fence_now(write.process, write)
        if now <= fence + 1e-9:  # the same reading it was drawn at: float rounding only
            return False
        write.refused = write.answered = True
        self.events = [e for e in self.events if e[3] is not write]
        heapq.heapify(self.events)
        return True

    def _release(self, process: Process, ref: ShardRef, held: Held) -> None:
        """As Held.drop: released only when the page ended before its fence (the join
        did not time out), on the holder's clock."""
        del process.held[ref]
        process.keeper.ended(ref, held.lease)
        now, fence = self._fence_now(process.name, held)
        if now <= fence and held.lease.until != 0.0:
            with contextlib.suppress(ReplicatorError):
                process.keeper.release(ref, "r")
