"""The runner's lease keeper: the worker id's claim, shard leases, renewals and deadlines.

Fencing by time (docs/concepts/guarantees.md): a shard's writes start no later than its lease's
*deadline*, the expiry less the margin, and every request ends within the request timeout,
shorter than the margin. So the keeper must make sure that

- renewals do not wait behind the data path: they run on their own threads, every sixth
  of the lease, through their own client (``Region.leases``), one attempt per request; a
  renewal that fails is tried once more at once (``RETRY``: a throttle or a dropped
  connection then costs no tick), and again at the next tick, several ticks before the
  deadline comes;
- renewals of one region do not wait behind another's: each region's run on a thread of
  its own, so a region slow to answer delays its own renewals only;
- a lease never outlives the worker id's claim in its region (every expiry is capped at
  the claim's, and the claim is never lowered below a lease the table may hold), so a
  process restarted under the same id never sees its predecessor's claim expired while one
  of its leases is live (the state store's acquire also wants the expiry passed or the
  lease's token: aws/state.py);
- the table applies renewals in the order sent (``order``), so one landing late is refused,
  and a later one may lower the expiry: after the wall clock stepped back, a lease further
  ahead than a lease from now is brought down, its deadline lowered before the request is
  sent (the keeper never believes in more lease than the table may hold);
- a lease keeps the margin it was taken with: a reload that changes the lease duration
  does not move a running shard's deadline.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import Claims, ms
from dynamodb_replicator.runner.reachability import TRANSIENT
from dynamodb_replicator.runner.regions import Coordination

__all__ = ["RETRY", "Lease", "LeaseKeeper"]

log = logging.getLogger(__name__)

RETRY = Backoff(attempts=2, base=0.05, cap=0.05)
"""A claim or lease renewal that failed transiently is sent once more at once, its expiry
taken anew: with ~10% of requests failing (the fault tests) a tick then fails about once in
fifty, not once in five. Once only: a region that times out holds its own thread up to two
requests per renewal, and the next tick tries again anyway."""


@dataclass(slots=True)
class Lease:
    """A shard lease this process holds. ``until`` (epoch seconds) is moved by the keeper's
    thread and read by the shard's: one float assignment, seen whole."""

    region: str
    until: float
    margin: float  # fixed when taken: a reload does not move this lease's deadline
    # The latest expiry the table may hold for it: the last renewal answered's, or one
    # sent since (it may still land). The claim is kept at least this (``_lease_top``).
    ceiling: float = 0.0
    span: float = 0.0  # the lease duration when taken (a reload does not change it)

    def deadline(self) -> float:
        """No write of the shard starts after this (epoch seconds)."""
        return self.until - self.margin


class LeaseKeeper(Claims):
    """Claims the worker id, takes, renews and releases shard leases; renews on its own
    thread (``start``) until ``stop``."""

    def __init__(
        self,
        worker_id: str,
        instance: str,
        clock: Clock,
        lease_seconds: float,
        *,
        on_late: Callable[[ShardRef], None] = lambda _ref: None,
    ) -> None:
        self.on_late = on_late  # a renewal came after the deadline: its writes may go on
        super().__init__(worker_id, instance, clock, lease_seconds)
        self.leases: dict[ShardRef, Lease] = {}
        self._left: dict[ShardRef, Lease] = {}  # left to expire, thread out (``leaving``)
        # Leases no longer held (or an acquire whose answer was lost) that the table may
        # still hold live for us, until released or past their ceiling (``_lease_top``).
        self._gone: dict[ShardRef, Lease] = {}
        # One lease call at a time per region (see ``forget``): a slow region's renewal or
        # acquire holds up no other region's.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: dict[str, threading.Thread] = {}  # region -> its renewal still out

    @property
    def tick(self) -> float:
        """Seconds between renewals: four tries fit before the deadline (3/4 of the lease)."""
        return max(0.05, self.lease_seconds / 6)

    # -- leases --------------------------------------------------------------------------
    def _lock(self, region: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(region, threading.Lock())

    def _expiry(self, region: str, now: float) -> float:
        """A lease taken or renewed ``now`` lasts until then: never past our claim."""
        return min(now + self.lease_seconds, self.claims.get(region, now))

    def acquire(self, region: str, ref: ShardRef) -> Lease | None:
        """Take ``ref``'s lease in ``region``; None when another worker holds it."""
        if region not in self.stores:
            return None  # not answering now: acquired once it does
        if self._still_left(ref):
            return None  # its dropped thread may still write: taken again once it expires
        # Through ``try_claim``, as at start: a region that did not answer then may still
        # bear the claim of a predecessor proven dead, taken over after the margin.
        if self._claim_due(region) and not self.try_claim(region):
            return None  # the dead holder's margin runs: taken at a later round
        with self._lock(region):
            now = self._now()  # taken before the call: the lease lasts at least this
            inherit = self.inheriting(region)
            with self._beat_lock:
                until = self._expiry(region, now)
                if until <= now:
                    return None
                # Once sent, it may land: kept under the claim until it is answered.
                before = self._gone.get(ref)
                top = until if before is None else max(until, before.ceiling)
                self._gone[ref] = Lease(region, until, self.margin, top, self.lease_seconds)
            taken = self.stores[region].acquire(
                ref, self.worker_id, ms(now), ms(until - now), inherit=inherit
            )
            with self._beat_lock:
                if taken:  # what the table held of it before is replaced
                    self._gone.pop(ref, None)
                    lease = Lease(region, until, self.margin, until, self.lease_seconds)
                    self.leases[ref] = lease
                    return lease
                if before is None:  # refused: the table holds what it held
                    self._gone.pop(ref, None)
                else:
                    self._gone[ref] = before
                return None

    def _claim_due(self, region: str) -> bool:
        """The claim in ``region`` must be renewed before a lease is taken there: none yet
        (a region that answers again), one running low, or one bearing a margin narrower
        than this lease's (a reload lengthened the lease, and so may the request timeout:
        a successor proving us dead must wait the new margin from then on)."""
        if self.claims.get(region, 0.0) <= self._now() + self.lease_seconds / 2:
            return True
        return self.claimed_margins.get(region, 0.0) < self.margin

    def forget(self, ref: ShardRef) -> None:
        """Stop renewing ``ref``'s lease (the shard is being dropped)."""
        lease = self.leases.get(ref)
        if lease is None:
            return
        with self._lock(lease.region), self._beat_lock:  # waits for a renewal still out
            self.leases.pop(ref, None)
            self._gone[ref] = lease  # in the table until released or expired

    def leave(self, ref: ShardRef, lease: Lease) -> None:
        """``lease`` is left to expire, its thread still in a request (``leaving``)."""
        now = self._now()
        self._left = {r: held for r, held in self._left.items() if held.until > now}
        self._left[ref] = lease

    def _still_left(self, ref: ShardRef) -> bool:
        """``ref``'s lease was left to expire and has not: the store holding its token
        would take it again at once, and a second thread would write the shard while the
        first one's request may still land (at most one writer per shard)."""
        left = self._left.get(ref)
        return left is not None and left.until > self._now()

    def leaving(self, region: str) -> bool:
        """A lease left to expire (its thread may still write) lives in ``region``: the
        claim must outlive it (so a process under the same id cannot take the shard)."""
        now = self._now()
        return any(held.region == region and held.until > now for held in self._left.values())

    def release(self, ref: ShardRef, region: str) -> None:
        """Hand ``ref``'s lease back (its page in flight is over): another worker may take
        it at once. A request that failed is sent again with the round's quick retries
        (``TRANSIENT``), a stop or not: a shutdown is when releases matter most. The store
        keeps the token until the table answered, so a retry carries the same condition;
        whichever attempt lands first moves the token, and one landing after it (or after
        another worker's acquire) is refused. Raises the last error."""
        store = self.stores.get(region)
        if store is None:
            return  # not answering: the lease runs out on its own
        call_with_retries(lambda: store.release(ref, self.worker_id), TRANSIENT, clock=self.clock)
        with self._beat_lock:
            gone = self._gone.get(ref)
            if gone is not None and gone.region == region:
                del self._gone[ref]

    def _lease_top(self, region: str, now: float) -> float:
        """The latest expiry a lease of ours may have in ``region``'s table, live at
        ``now``: held, or gone but not released (0: none). Called under ``_beat_lock``."""
        self._gone = {ref: lease for ref, lease in self._gone.items() if lease.ceiling > now}
        ours = (*self.leases.values(), *self._gone.values())
        return max((lease.ceiling for lease in ours if lease.region == region), default=0.0)

    def renew_all(self, regions: set[str] | None = None) -> None:
        """One tick: in each region (default: every one we hold a lease or claim in), the
        claim first, then every lease there, capped at the claim."""
        # One snapshot a tick: a reload (or a round) may take a region out of the stores
        # meanwhile, and the regions after it must still be renewed in this tick.
        stores = self.stores
        names = set(stores) if regions is None else regions
        for region in sorted(names & set(stores)):
            self._renew_in(region, stores[region])

    def _renew_in(self, region: str, store: Coordination) -> None:
        """Renew the claim in ``region``, then its leases (capped at the claim)."""
        try:
            call_with_retries(
                lambda: self.heartbeat(region, store), RETRY, stop=self._stop, clock=self.clock
            )
        except ReplicatorError as exc:
            log.warning("claim not renewed", extra={"region": region, "reason": str(exc)})
        self._renew_region(region, store)

    def _renew_region(self, region: str, store: Coordination) -> None:
        for ref, lease in list(self.leases.items()):
            if lease.region != region:
                continue
            try:
                one = functools.partial(self._renew_one, region, store, ref, lease)
                renewed = call_with_retries(one, RETRY, stop=self._stop, clock=self.clock)
            except ReplicatorError as exc:  # tried again at the next tick
                log.warning("lease not renewed", extra={"shard": str(ref), "reason": str(exc)})
                continue
            if renewed is None:
                continue
            kept, until = renewed
            if not kept:
                log.warning("lease lost", extra={"shard": str(ref), "worker": self.worker_id})
                lease.until = 0.0  # no write starts any more; the coordinator drops it
                continue
            late = self._now() > lease.deadline()
            with self._beat_lock:  # stored: one sent before it lands refused
                lease.until = lease.ceiling = until
            if late:  # its writes failed for want of time: let them go on at once
                self.on_late(ref)

    def _renew_one(
        self, region: str, store: Coordination, ref: ShardRef, lease: Lease
    ) -> tuple[bool, float] | None:
        """One renewal request of ``lease``: (still ours, its new expiry); None when it is
        not to be renewed now."""
        now = self._now()
        with self._lock(region):  # ``forget`` waits for it: no renewal after a release
            # The very Lease object, not the ref: one forgotten and taken again since the
            # snapshot belongs to a dropped thread whose deadline must stay.
            if self.leases.get(ref) is not lease:
                return None
            if self.stores.get(region) is not store:
                return None  # taken through a store a reload put in since: next tick
            with self._beat_lock:
                until = self._expiry(region, now)
                span = max(self.lease_seconds, lease.span)
                if lease.until > now + span:
                    # Ahead of any lease taken now: the wall clock stepped back since.
                    # Brought down to one such lease (still past every write started by
                    # now: a span is longer than the margin), so that a holder dying now
                    # does not keep the shard from the others for the whole step.
                    until = min(now + span, self.claims.get(region, now))
                elif until <= lease.until:
                    return None  # the claim was not renewed: the lease cannot be moved on
                if until <= now:
                    return None
                # No write starts past what the table may hold once this lands.
                lease.until = min(lease.until, until)
                lease.ceiling = max(lease.ceiling, until)
                order = self._order()
            return store.renew(ref, self.worker_id, ms(now), ms(until - now), order=order), until

    # -- the renewal thread ----------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; returns once no renewal is out (none lands after a release)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for thread in list(self._out.values()):
            thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = self._now()
            try:
                self._tick()
            except Exception:  # a long-running thread logs, and tries again next tick
                log.exception("lease renewal failed", extra={"worker": self.worker_id})
            # Ticks start every ``tick``, however long one takes.
            self._stop.wait(max(0.0, self.tick - (self._now() - began)))

    def _tick(self) -> None:
        """Start each region's renewal on a thread of its own, unless its last one is still
        out: a region whose requests are slow or fail (each waits up to the request
        timeout) delays its own renewals only, never another region's. The deadline
        rule is the same as ``renew_all``'s: each lease's expiry is computed from a time
        taken before its request, and capped at the claim."""
        stores = self.stores  # one snapshot a tick (see ``renew_all``)
        for region in sorted(stores):
            if region in self._out:
                continue  # still out: this region's next tick starts once it answers
            thread = threading.Thread(
                target=self._renew_out,
                args=(region, stores[region]),
                name=f"lease-renewal-{region}",
                daemon=True,
            )
            self._out[region] = thread
            thread.start()

    def _renew_out(self, region: str, store: Coordination) -> None:
        try:
            self._renew_in(region, store)
        except Exception:  # logged; the region's next tick tries again
            log.exception("lease renewal failed", extra={"region": region})
        finally:
            self._out.pop(region, None)

    def lost(self, ref: ShardRef) -> bool:
        lease = self.leases.get(ref)
        return lease is not None and lease.until == 0.0
