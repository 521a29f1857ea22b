"""The control-plane simulation with shard workers: processes that hold shards through the
real LeaseKeeper over the in-memory state table (the fencing conditions of aws/state.py),
read a shard's records, write them to a target region, settle and checkpoint them, and are
reloaded, paused, slowed and restarted, all on a simulated clock drawn by seed.

The shard worker is a model of the runner's rules, not the runner's threads (a deterministic
replay by seed needs one thread): a write starts only at or before its lease's deadline
(``Lease.deadline``, asked as ``apply_page`` does) and lands up to one request later; its
tombstone read happens when it starts and its conditional put when it lands, so a delete may
slip in between (the window of issue #23). Settling (a read of the remembered delete after
the put answered, and the delete it decides) runs whatever the deadline; the checkpoint is
saved only after it, through the real ``save`` (refused once the lease passed on). A reload
drops the shards it concerns as ``Held.drop`` does: no write starts any more, the write out
is settled, the lease is released only when that ended before the deadline (else it is
left to expire), and renewals stop at once.

Checked: no record's write lands after another process acquired its shard (the store's
timeline); no write lands for a record a saved checkpoint already passed; checkpoints never
move backward; once faults stop, every record is checkpointed and every key's final state in
the target is the last writer's (a late put never undoes a delete).
"""

from __future__ import annotations

import contextlib
import heapq
import random
from dataclasses import dataclass, field

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.errors import ReplicatorError, UnreachableError
from dynamodb_replicator.core.streams import LeaseLostError, ShardRef
from dynamodb_replicator.runner.leases import Lease, LeaseKeeper
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore

REQUEST = 6.0  # the request lifetime: shorter than every lease's margin (7 s and more)
LEASES = (28.0, 30.0, 40.0)  # the lease durations a reload may switch between
SHARDS = tuple(ShardRef("T", "arn:r/stream/T", f"s-{n}") for n in range(2))
RECORDS = 30  # per shard
IDS = ("w1", "w2")
TARGET = "t"


@dataclass(frozen=True)
class Rec:
    """A source record: a put or delete of ``key`` at version ``ts`` (stream order)."""

    shard: ShardRef
    seq: int
    key: str
    ts: int
    delete: bool


@dataclass
class Target:
    """The target region's table: items and remembered deletes (key -> timestamp)."""

    items: dict[str, int] = field(default_factory=dict)
    tombs: dict[str, int] = field(default_factory=dict)

    def delete(self, key: str, ts: int) -> None:
        """A delete (the application's, or a replicated one): remembered, then applied."""
        self.tombs[key] = max(ts, self.tombs.get(key, ts))
        if self.items.get(key, ts + 1) <= ts:
            del self.items[key]

    def put(self, key: str, ts: int) -> None:
        """The conditional put: only over an older item (it does not see remembered deletes:
        the tombstone was read when the write started)."""
        if self.items.get(key, ts - 1) < ts:
            self.items[key] = ts

    def settle(self, key: str) -> None:
        """The settling read: an item no newer than the remembered delete is deleted."""
        if key in self.items and self.items[key] <= self.tombs.get(key, -1):
            del self.items[key]


@dataclass
class Write:
    """A record's write by ``process``: tombstone read at ``started``, lands at ``lands``."""

    rec: Rec
    process: str
    term: float  # when the writer's lease was acquired (the store's time)
    started: float
    lands: float
    lease: Lease | None = None  # the writer's: its deadline is asked when the write starts
    read: bool = False  # the tombstone read is done (the write has started)
    refused: bool = False  # its lease was lowered under its start since it was drawn
    skipped: bool = False  # it found a newer delete: no put
    answered: bool = False


@dataclass
class Held:
    lease: Lease
    term: float
    next_seq: int  # the next record this process writes
    write: Write | None = None
    dropping: bool = False


@dataclass
class Process:
    name: str
    worker: str
    keeper: LeaseKeeper
    held: dict[ShardRef, Held] = field(default_factory=dict)
    claimed: bool = False
    paused_until: float = 0.0
    alive: bool = True


class ShardSimulation:
    def __init__(self, seed: int, steps: int) -> None:
        self.rng = random.Random(seed)
        self.steps = steps
        self.faults = True
        self.clock = ManualClock()
        self.table = LeaseTable(self.clock)
        self.target = Target()
        self.records = {s: self._records(i, s) for i, s in enumerate(SHARDS)}
        self.app_deletes: list[tuple[str, int]] = []
        self.processes: list[Process] = []
        self.events: list[tuple[float, int, str, Write]] = []  # (time, n, "start"/"land", w)
        self.n = 0
        self.checkpoints: dict[ShardRef, int] = {}
        self.found: list[str] = []
        self.resurrections_settled = 0  # puts that landed over a newer delete, then settled
        self.killed: set[str] = set()  # processes a successor can prove dead (liveness.py)
        for worker in IDS:
            self.start(worker)

    def _records(self, index: int, shard: ShardRef) -> list[Rec]:
        keys = (f"k{index}a", f"k{index}b")
        return [
            Rec(shard, seq, self.rng.choice(keys), 10 * seq, self.rng.random() < 0.25)
            for seq in range(1, RECORDS + 1)
        ]

    # -- requests, processes ------------------------------------------------------------
    def _request(self, call: str) -> None:
        """A state-table request: up to a request lifetime long, or it times out."""
        slow = self.faults and self.rng.random() < 0.1
        self.clock.t += self.rng.uniform(0.0, REQUEST if slow else 0.2)
        if self.faults and self.rng.random() < 0.05:
            raise UnreachableError(f"{call} timed out", region="r")

    def start(self, worker: str) -> None:
        name = f"{worker}#{len(self.processes) + 1}"
        keeper = LeaseKeeper(worker, name, self.clock, self.rng.choice(LEASES))
        keeper.dead = self.killed.__contains__  # a restart proves its predecessor dead
        keeper.stores = {"r": MemoryStateStore(self.table, self._request, name=name)}
        self.processes.append(Process(name, worker, keeper))

    def run(self) -> None:
        for _ in range(self.steps):
            self.step()
        self.faults = False  # then calm: every record must get through
        for process in self.processes:
            process.paused_until = 0.0
        for _ in range(20 * self.steps):
            if self.complete():
                break
            self.step()

    def complete(self) -> bool:
        return all(self.checkpoints.get(s) == RECORDS for s in SHARDS) and not self.events

    def step(self) -> None:
        self._happen(self.clock.t)
        live = [p for p in self.processes if p.alive and p.paused_until <= self.clock.t]
        actions: dict[str, float] = {"tick": 3, "acquire": 2, "write": 4, "settle": 4, "wait": 2}
        if self.faults:
            actions |= {"app_delete": 3, "fault": 0.5, "reload": 0.5}
        action = self.rng.choices(list(actions), list(actions.values()))[0]
        if action in ("wait", "app_delete") or not live:
            self._app_delete() if action == "app_delete" else self._wait()
            return
        process = self.rng.choice(live)
        # A request that failed, or a predecessor's claim still live: tried again later.
        with contextlib.suppress(UnreachableError, WorkerIdInUseError):
            getattr(self, f"_{action}")(process)
        self._observe()

    def _wait(self) -> None:
        """Time goes by: often to just past the next lease expiry or event, else a bit."""
        moments = [lease.expires_ms / 1000 for lease in self.table.leases.values()]
        moments += [t for t, _, _, _ in self.events]
        later = [t for t in moments if t > self.clock.t]
        if later and self.rng.random() < 0.5:
            self.clock.t = min(later) + self.rng.uniform(0.001, 0.01)
        else:
            self.clock.t += self.rng.uniform(0.0, 5.0)

    def _app_delete(self) -> None:
        """The target's application deletes a key, at a version between the records'."""
        out = [w.rec for _, _, k, w in self.events if k == "land" and w.read and not w.rec.delete]
        if out and self.rng.random() < 0.7:  # often: a put out right now (issue #23's window)
            rec = self.rng.choice(out)
            key, ts = rec.key, rec.ts + 5
        else:
            shard = self.rng.choice(SHARDS)  # a delete near where the shard stands
            at = self.checkpoints.get(shard, 0)
            key = self.rng.choice([r.key for r in self.records[shard]])
            ts = 10 * self.rng.randint(at, min(RECORDS, at + 2)) + 5
        self.app_deletes.append((key, ts))
        self.target.delete(key, ts)

    def _tick(self, process: Process) -> None:
        if not process.claimed:
            if not process.keeper.try_claim("r"):  # a dead predecessor's margin runs
                return
            process.claimed = True
        process.keeper.renew_all()
        for ref, held in list(process.held.items()):
            if held.lease.until == 0.0:  # lost: the runner drops it
                self._drop(process, ref)

    def _acquire(self, process: Process) -> None:
        if not process.claimed:
            return
        shard = self.rng.choice(SHARDS)
        if shard in process.held:
            return
        lease = process.keeper.acquire("r", shard)
        if lease is None:
            return
        term = self.table.timeline[-1][0]  # the table's time of the acquire
        saved = process.keeper.stores["r"].load(shard).get(TARGET)
        process.held[shard] = Held(lease, term, 1 if saved is None else int(saved) + 1)

    def _write(self, process: Process) -> None:
        for shard, held in process.held.items():
            if held.write is not None or held.dropping or held.next_seq > RECORDS:
                continue
            if self.clock.t > held.lease.deadline():
                continue  # asked before each write: no time left
            # Adversarial: often started at the last moment allowed, taking a whole request.
            late = self.faults and self.rng.random() < 0.5
            started = held.lease.deadline() if late else self.clock.t
            rec = self.records[shard][held.next_seq - 1]
            lands = started + REQUEST * self.rng.uniform(0.5 if self.faults else 0.0, 1.0)
            held.write = Write(rec, process.name, held.term, started, lands, held.lease)
            for when, kind in ((started, "start"), (lands, "land")):
                self.n += 1
                heapq.heappush(self.events, (when, self.n, kind, held.write))

    def _settle(self, process: Process) -> None:
        """Settle an answered write and checkpoint it (whatever the deadline)."""
        for shard, held in list(process.held.items()):
            write = held.write
            if write is None or not write.answered:
                continue
            if write.refused:  # left for a retry, as a DeadlineError is
                held.write = None
                if held.dropping:
                    self._release(process, shard, held)
                continue
            before = self.target.items.get(write.rec.key)
            self.target.settle(write.rec.key)
            if before == write.rec.ts and write.rec.key not in self.target.items:
                self.resurrections_settled += 1
            try:
                process.keeper.stores["r"].save(shard, {TARGET: str(write.rec.seq)})
            except LeaseLostError:
                self._forget(process, shard)
                continue
            held.write, held.next_seq = None, write.rec.seq + 1
            self._undone(shard)
            if held.dropping:
                self._release(process, shard, held)

    def _fault(self, process: Process) -> None:
        if self.rng.random() < 0.5:
            process.paused_until = self.clock.t + self.rng.uniform(10.0, 90.0)
        else:
            process.alive = False  # killed: its writes out still land, unsettled
            self.killed.add(process.name)
            self._unsent(process)
            self.start(process.worker)  # restarted with the same worker id

    def _unsent(self, process: Process) -> None:
        """A killed process sends nothing more: its writes still to start (checked against
        the deadline, sent "at the last moment" later) never leave it. Those it sent land
        as drawn, up to a request lifetime later."""
        unsent = {
            id(h.write)
            for h in process.held.values()
            if h.write is not None and h.write.started > self.clock.t
        }
        self.events = [e for e in self.events if id(e[3]) not in unsent]
        heapq.heapify(self.events)

    def _reload(self, process: Process) -> None:
        """A reload: the lease duration may change (held leases keep their margin); a
        removed or changed target drops the shards it concerns (here one, or all)."""
        process.keeper.lease_seconds = self.rng.choice(LEASES)
        refs = list(process.held)
        if refs:
            for ref in refs if self.rng.random() < 0.3 else [self.rng.choice(refs)]:
                self._drop(process, ref)

    # -- dropping, as Held.drop ---------------------------------------------------------
    def _drop(self, process: Process, ref: ShardRef) -> None:
        held = process.held[ref]
        process.keeper.forget(ref)  # no renewal any more
        held.dropping = True
        if held.write is None:
            self._release(process, ref, held)

    def _release(self, process: Process, ref: ShardRef, held: Held) -> None:
        del process.held[ref]
        process.keeper.ended(ref, held.lease)  # no write out, as Held.drop says
        if self.clock.t <= held.lease.deadline() and held.lease.until != 0.0:
            # Else left to expire; so too when the release (retried) fails, as Held.drop.
            with contextlib.suppress(ReplicatorError):
                process.keeper.release(ref, "r")

    def _forget(self, process: Process, ref: ShardRef) -> None:
        process.keeper.forget(ref)
        process.held.pop(ref, None)

    # -- the target's timeline, and the checks ------------------------------------------
    def _happen(self, now: float) -> None:
        while self.events and self.events[0][0] <= now:
            _, _, kind, write = heapq.heappop(self.events)
            rec = write.rec
            if kind == "start":
                if self._lowered_under(write):
                    continue
                write.skipped = self.target.tombs.get(rec.key, -1) >= rec.ts
                write.read = True
                continue
            self._fenced(write)
            if self.checkpoints.get(rec.shard, 0) >= rec.seq:
                self.found.append(
                    f"{write.process}'s write of seq {rec.seq} landed past the checkpoint"
                )
            if rec.delete:
                self.target.delete(rec.key, rec.ts)
            elif not write.skipped:
                self.target.put(rec.key, rec.ts)
            write.answered = True

    def _lowered_under(self, write: Write) -> bool:
        """The write was drawn to start at its lease's deadline, and the keeper lowered
        the lease since (a dropped lease brought down to a lease from its lowering, which
        is past every start drawn before it): the writer asks the deadline when it
        starts, so it never does. A lease found lost (``until`` 0) is not taken as one:
        when the writer learnt it is not modelled, so its write still starts."""
        lease = write.lease
        if lease is None or lease.until == 0.0 or write.started <= lease.deadline():
            return False
        write.refused = write.answered = True
        self.events = [e for e in self.events if e[3] is not write]
        heapq.heapify(self.events)
        return True

    def _fenced(self, write: Write) -> None:
        for at, event, shard, who in self.table.timeline:
            other = event == "acquire" and shard == write.rec.shard and who != write.process
            if other and write.term < at < write.lands:
                self.found.append(
                    f"{write.process}'s write of {shard.shard_id} landed at "
                    f"{write.lands:.2f}, after {who} acquired it at {at:.2f}"
                )

    def _undone(self, shard: ShardRef) -> None:
        """Just checkpointed: no key of the shard is an item older than its remembered
        delete (one writer per shard, and it settled its write before the checkpoint)."""
        for key in {r.key for r in self.records[shard]}:
            item, tomb = self.target.items.get(key), self.target.tombs.get(key, -1)
            if item is not None and item <= tomb:
                self.found.append(f"{key}: the delete at {tomb} undone by a put of {item}")

    def _observe(self) -> None:
        for shard, lease in self.table.leases.items():
            saved = int(lease.positions.get(TARGET, "0"))
            if saved < self.checkpoints.get(shard, 0):
                self.found.append(f"checkpoint of {shard.shard_id} moved back to {saved}")
            self.checkpoints[shard] = saved

    def violations(self) -> list[str]:
        found = list(self.found)
        if not self.complete():
            found.append(f"not every record got through: {self.checkpoints}")
            return found
        for key in {r.key for s in SHARDS for r in self.records[s]}:
            last = max(
                [(r.ts, r.delete) for s in SHARDS for r in self.records[s] if r.key == key]
                + [(ts, True) for k, ts in self.app_deletes if k == key]
            )
            want = None if last[1] else last[0]
            if self.target.items.get(key) != want:
                found.append(f"{key}: {self.target.items.get(key)} in the target, {want} last")
        return found
