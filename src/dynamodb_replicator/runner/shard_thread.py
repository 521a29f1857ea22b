"""One leased shard's thread: its ShardWorker stepped until stopped, then settled."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import LeaseLostError, ShardRef
from dynamodb_replicator.runner.leases import Lease
from dynamodb_replicator.runner.shardworker import ShardWorker

__all__ = ["Owned", "run_shard"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Owned:
    """A shard this process holds: its worker, thread, stop signal and lease."""

    worker: ShardWorker
    thread: threading.Thread
    stop: threading.Event
    region: str
    ref: ShardRef
    lease: Lease


def run_shard(worker: ShardWorker, stop: threading.Event, clock: Clock, idle_max_s: float) -> None:
    """Run the shard until stopped; then settle its page in flight."""
    try:
        _steps(worker, stop, clock, idle_max_s)
    finally:
        worker.flush()


def _steps(worker: ShardWorker, stop: threading.Event, clock: Clock, idle_max_s: float) -> None:
    """Poll at once after records; back off while idle, capped for low latency."""
    idle = Backoff(base=0.01, cap=idle_max_s)
    idle_polls = 0  # empty reads in a row
    next_parent_check = 0.0
    while not stop.is_set() and not worker.done:
        try:
            if worker.waiting and clock.now() >= next_parent_check:
                worker.check_parent()
                next_parent_check = clock.now() + 1.0
            read = worker.step()
        except LeaseLostError as exc:
            log.warning("lease lost: shard stopped", extra={"reason": str(exc)})
            return
        except ReplicatorError as exc:
            log.warning("shard step failed", extra={"shard": str(worker.shard), "reason": str(exc)})
            read = 0
        except Exception:
            log.exception("shard worker crashed", extra={"shard": str(worker.shard)})
            return
        # Alone in its thread (no herd to spread): it waits the ceiling, without jitter.
        idle_polls = 0 if read else idle_polls + 1
        delay = idle.ceiling(idle_polls - 1) if idle_polls else 0.0
        if delay:
            stop.wait(delay)
