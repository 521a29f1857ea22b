"""A failed write that may still land: when its request went out, and the wait that outlives it.

A write whose answer never came (a dropped connection, a read timeout, HTTP 5xx:
``core.errors.may_still_land``) may still be applied up to the request lifetime after its
request was sent (docs/concepts/guarantees.md, "Timing and clocks", assumption (1)). Its
retry may go out at once: landing late, the first attempt meets its own version (or a
later write of the key) and is refused, or lands on a key a later write of the batch
deleted, which settling then finds (P2/P3 read the tombstone). So the writer waits that
out once per batch, before settling: no settling read, checkpoint, lease hand-over or
Lambda return comes before the last chance of any of the batch's writes to land
(core/writer.py). A write call of the protocol may make several requests (a
delete: D1, a read, D2); only the last one started can still be out when it raises (each
earlier one answered), so the wait counts from when that one started: ``SendTimes`` notes
it per thread, on the monotonic reading of the protocol's clock, and forgets it when the
last request is a read (a failed read lands nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.errors import DeadlineError
from dynamodb_replicator.core.model import Item, ItemKey
from dynamodb_replicator.core.ports import Clock, Deadline, deadline_passed
from dynamodb_replicator.core.store import Store, StoreResult

__all__ = ["SendTimes", "TimedStore", "outlive"]


class SendTimes(threading.local):
    """When this thread's last store request, a write, started (``Clock.elapsed``; None:
    none yet, or the last one was a read); and the deadline of the call it runs in (None:
    none), which every write request of that call is held to, not only its first."""

    last: float | None = None
    deadline: Deadline = None


@dataclass(frozen=True, slots=True)
class TimedStore:
    """``store``, noting in ``sends`` when each write of the calling thread starts."""

    store: Store
    clock: Clock
    sends: SendTimes = field(default_factory=SendTimes)

    @property
    def region(self) -> str:
        return self.store.region

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        self._starting_write()
        return self.store.put(table, item, condition)

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        self._starting_write()
        return self.store.delete(table, key, condition)

    def _starting_write(self) -> None:
        # A protocol call may write several times (a delete: D1, then D2 after a read);
        # each write is checked, so none starts after the deadline and each ends (its
        # wait included) within a lifetime of it. Stopping between them is what a crash
        # there does: the protocol is safe at every step, and the replay finishes it.
        if deadline_passed(self.sends.deadline, self.clock):
            raise DeadlineError("no time left to start this write; it is left for a retry")
        self.sends.last = self.clock.elapsed()

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        # A read lands nothing, and the writes before it answered: none of them is out.
        self.sends.last = None
        return self.store.get(table, keys)


def outlive(clock: Clock, sent: float, lifetime: float) -> float:
    """Wait until ``lifetime`` after ``sent`` (``Clock.elapsed``) on ``clock``; the seconds
    waited. Neither a stop nor a deadline cuts it short: returning earlier would let the
    caller's next step (a retry, settling, a checkpoint, a lease released, a Lambda
    invocation ended) come before the request's last chance to land. It ends within one
    lifetime of the request's start, which the lease margin and the Lambda's deadline
    already keep room for."""
    left = sent + lifetime - clock.elapsed()
    if left <= 0:
        return 0.0
    clock.wait(left, None)
    return left
