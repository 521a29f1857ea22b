"""An in-memory state table for tests of the control plane: leases, worker claims and
checkpoints with the conditions of aws/state.py (integration tests hold that module to the
same rules on DynamoDB Local), and a timeline of what the table accepted.

One ``LeaseTable`` is a region's table; each process gets its own ``MemoryStateStore`` on
it (the tokens of the leases it acquired are the process's own). ``before`` runs before
every call (a test can move its clock there: a slow request) and may raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.streams import LeaseLostError, ShardRef

__all__ = ["LeaseTable", "MemoryStateStore"]


@dataclass
class _Lease:
    owner: str
    expires_ms: int
    token: int
    positions: dict[str, str] = field(default_factory=dict)
    order: int = 0  # of the renewal applied last (an acquire starts again from none)


@dataclass
class LeaseTable:
    """A region's state table; ``timeline`` lists (store time, event, shard, who): who is
    the store's name (one per process), else the lease's owner."""

    clock: Clock
    leases: dict[ShardRef, _Lease] = field(default_factory=dict)
    workers: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (instance, exp)
    margins: dict[str, int] = field(default_factory=dict)  # id -> its claim's margin_ms
    orders: dict[str, int] = field(default_factory=dict)  # id -> its heartbeat applied last
    timeline: list[tuple[float, str, ShardRef, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def note(self, event: str, shard: ShardRef, owner: str) -> None:
        self.timeline.append((self.clock.now(), event, shard, owner))


class MemoryStateStore:
    """One process's view of a ``LeaseTable`` (the Coordination port of the runner)."""

    def __init__(
        self,
        table: LeaseTable,
        before: Callable[[str], None] = lambda _call: None,
        *,
        name: str = "",
    ) -> None:
        self.table, self.before, self.name = table, before, name
        self.held: dict[ShardRef, tuple[str, int]] = {}

    # -- leases (conditions as in aws/state.py) ---------------------------------------------
    def acquire(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, inherit: bool = False
    ) -> bool:
        self.before("acquire")
        with self.table.lock:
            lease = self.table.leases.get(shard)
            mine = self.held.get(shard)
            free = lease is None or lease.expires_ms < now_ms or (inherit and lease.owner == owner)
            if not free and (mine is None or (lease.owner, lease.token) != mine):  # type: ignore[union-attr]
                return False
            token = 1 if lease is None else lease.token + 1
            positions = {} if lease is None else lease.positions
            self.table.leases[shard] = _Lease(owner, now_ms + duration_ms, token, positions)
            self.held[shard] = (owner, token)
            self.table.note("acquire", shard, self.name or owner)
            return True

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        self.before("renew")
        with self.table.lock:
            lease = self.table.leases.get(shard)
            if lease is None or (lease.owner, lease.token) != self.held.get(shard):
                self.held.pop(shard, None)
                return False
            # In the order sent: a renewal landing after a later one is refused, and
            # the later one's expiry stands, lower or not.
            if order <= lease.order:
                return lease.expires_ms >= now_ms + duration_ms
            lease.expires_ms, lease.order = now_ms + duration_ms, order
            return True

    def release(self, shard: ShardRef, owner: str) -> None:
        self.before("release")  # a failed request: the token is kept, for a retry
        with self.table.lock:
            lease = self.table.leases.get(shard)
            if lease is not None and (lease.owner, lease.token) == self.held.pop(shard, None):
                lease.expires_ms = 0
                lease.token += 1  # a renewal sent before and landing after is refused

    # -- checkpoints ---------------------------------------------------------------------
    def load(self, shard: ShardRef) -> dict[str, str]:
        self.before("load")
        with self.table.lock:
            lease = self.table.leases.get(shard)
            return dict(lease.positions) if lease is not None else {}

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        self.before("save")
        with self.table.lock:
            lease = self.table.leases.get(shard)
            if lease is None or (lease.owner, lease.token) != self.held.get(shard):
                raise LeaseLostError(f"{shard}: the lease passed to another worker")
            for target, position in positions.items():
                saved = lease.positions.get(target)
                if saved is None or int(position) > int(saved):
                    lease.positions[target] = position
            self.table.note("save", shard, self.name or lease.owner)

    # -- workers ---------------------------------------------------------------------------
    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        *,
        instance: str = "",
        now_ms: int = 0,
        replacing: str = "",
        margin_ms: int = 0,
        order: int,
    ) -> None:
        self.before("heartbeat")
        with self.table.lock:
            claimed = worker in self.table.workers
            holder, until = self.table.workers.get(worker, ("", 0))
            mine = claimed and holder == instance
            taken_over = bool(replacing) and holder == replacing
            if instance and claimed and not mine and until >= now_ms and not taken_over:
                margin = self.table.margins.get(worker, 0)
                raise WorkerIdInUseError(
                    worker,
                    "memory",
                    holder=holder,
                    expires_ms=until,
                    now_ms=now_ms,
                    margin_ms=margin,
                )
            if instance and mine and order <= self.table.orders.get(worker, 0):
                return  # our own claim (expired or released too), written by a later one
            self.table.workers[worker] = (instance, expires_ms)
            self.table.margins[worker] = margin_ms
            self.table.orders[worker] = order

    def live_workers(self, now_ms: int) -> list[str]:
        self.before("live_workers")
        with self.table.lock:
            return sorted(w for w, (_, until) in self.table.workers.items() if until >= now_ms)

    def forget_worker(self, worker: str, *, instance: str, order: int) -> None:
        self.before("forget_worker")
        with self.table.lock:
            holder = self.table.workers.get(worker, (instance, 0))[0]
            if holder == instance and order > self.table.orders.get(worker, 0):
                self.table.workers[worker] = (instance, 0)  # released (aws/state_workers.py)
                self.table.margins[worker] = 0
                self.table.orders[worker] = order

    def put(self, item: Mapping[str, Any]) -> None:
        self.before("put")
