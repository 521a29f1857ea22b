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

from dynamodb_replicator.core.errors import ReplicatorError, UnreachableError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.holdings import Holdings, Lease
from dynamodb_replicator.runner.regions import Coordination

__all__ = ["RETRY", "Lease", "LeaseKeeper"]

log = logging.getLogger(__name__)

RETRY = Backoff(attempts=2, base=0.05, cap=0.05)
"""A claim or lease renewal that failed transiently is sent once more at once, its expiry
taken anew: with ~10% of requests failing (the fault tests) a tick then fails about once in
fifty, not once in five. Once only: a region that times out holds its own thread up to two
requests per renewal, and the next tick tries again anyway."""


class LeaseKeeper(Holdings):
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: dict[str, threading.Thread] = {}  # region -> its renewal still out

    @property
    def tick(self) -> float:
        """Seconds between renewals: four tries fit before the deadline (3/4 of the lease)."""
        return max(0.05, self.lease_seconds / 6)

    # -- renewals ------------------------------------------------------------------------
    def renew_all(self, regions: set[str] | None = None) -> None:
        """One tick: in each region (default: every one we hold a lease or claim in), the
        claim first, then every lease there, capped at the claim."""
        # One snapshot a tick: a reload (or a round) may take a region out of the stores
        # meanwhile, and the regions after it must still be renewed in this tick.
        stores = self.stores
        names = set(stores) if regions is None else regions
        for region in sorted(names & set(stores)):
            self._renew_in(region, stores[region])

    def settle_now(self, regions: set[str]) -> None:
        """Send the due releases (and lowerings) of the dropped leases in ``regions`` once,
        as a tick does (``_settle_dropped``): a stopping runner hands them back itself
        before the ticks end. One that fails is left to run out (the claim kept above it)."""
        stores = self.stores
        for region in sorted(regions & set(stores)):
            self._settle_dropped(region, stores[region])

    def _renew_in(self, region: str, store: Coordination) -> None:
        """Renew the claim in ``region``, then its leases (capped at the claim)."""
        try:
            call_with_retries(
                lambda: self.heartbeat(region, store), RETRY, stop=self._stop, clock=self.clock
            )
        except ReplicatorError as exc:
            log.warning("claim not renewed", extra={"region": region, "reason": str(exc)})
        self._renew_region(region, store)
        self._settle_dropped(region, store)

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
            kept, until, sent, steady = renewed
            if not kept:
                log.warning("lease lost", extra={"shard": str(ref), "worker": self.worker_id})
                lease.until = 0.0  # no write starts any more; the coordinator drops it
                continue
            now = self._now()
            late = now > lease.fence(self.clock, now)
            with self._beat_lock:  # stored: one sent before it lands refused
                lease.ceiling = until
                # Told to stop (or dropped) while this renewal was out: the table holds it,
                # but the shard's page is cut at the fence it had then.
                moves = not (lease.stopping or lease.dropped)
                if moves:
                    lease.until = until
                    lease.stored(until, sent, steady)  # the fence moves on with answers only
            if late and moves:  # its writes failed for want of time: let them go on at once
                self.on_late(ref)

    def _renew_one(
        self, region: str, store: Coordination, ref: ShardRef, lease: Lease
    ) -> tuple[bool, float, float, float] | None:
        """One renewal request of ``lease``: (still ours, its new expiry, the wall and the
        monotonic reading it was sent at); None when it is not to be renewed now."""
        now, steady = self._now(), self.clock.elapsed()
        with self._lock(region):  # ``forget`` waits for it: no renewal after a release
            # The very Lease object, not the ref: one forgotten and taken again since the
            # snapshot belongs to a dropped thread whose deadline must stay.
            if self.leases.get(ref) is not lease:
                return None
            if self.stores.get(region) is not store:
                return None  # taken through a store a reload put in since: next tick
            with self._beat_lock:
                if lease.stopping:
                    return None  # its shard is being dropped (``Held.stop``)
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
                lease.may_store(until, now, steady)
                order = self._order()
            kept = store.renew(ref, self.worker_id, ms(now), ms(until - now), order=order)
            return kept, until, now, steady

    # -- dropped leases ----------------------------------------------------------------------
    def _settle_dropped(self, region: str, store: Coordination) -> None:
        """Each tick, the leases dropped in ``region`` that the table may still hold: one
        due for release (its thread ended, it was left to expire, or its release failed)
        whose writes can no longer land (``_still_left``) is released (again), and one
        stored further ahead than a lease from now (the wall clock stepped back since) is
        brought down to that, as a held one is (``_renew_one``): the claim then comes
        down with it (``_lease_top``), and
        a process dying after it frees the shard and its worker id a lease after its last
        tick. Until the table has answered, or the stored expiry has passed on both
        clocks with nothing to release (``_lease_top`` drops it then)."""
        with self._beat_lock:
            dropped = [
                (ref, lease)
                for ref, lease in self._gone.items()
                if lease.dropped and lease.region == region
            ]
        for ref, lease in dropped:
            if lease.release_due and not self._still_left(ref):
                again = functools.partial(self._release_dropped, region, store, ref, lease)
                try:
                    call_with_retries(again, RETRY, stop=self._stop, clock=self.clock)
                    continue
                except ReplicatorError as exc:  # brought down meanwhile, and tried again
                    log.warning("lease not released", extra={"shard": str(ref), "reason": str(exc)})
                    if self._give_up(exc):
                        return
            try:
                one = functools.partial(self._lower_dropped, region, store, ref, lease)
                call_with_retries(one, RETRY, stop=self._stop, clock=self.clock)
            except ReplicatorError as exc:  # tried again at the next tick
                log.warning("lease not lowered", extra={"shard": str(ref), "reason": str(exc)})
                if self._give_up(exc):
                    return

    def _give_up(self, exc: ReplicatorError) -> bool:
        """A failed request ends the region's round of dropped leases: the region could not
        be connected to (the others would wait out the same timeout), or the keeper is
        stopping (a stop waits on a region that answers nothing once, not once per lease;
        those leases run out on their own, the claim kept above them)."""
        return _not_connected(exc) or self._stop.is_set()

    def _mine(self, region: str, store: Coordination, ref: ShardRef, lease: Lease) -> bool:
        """``lease`` is still the dropped one the table may hold, taken through ``store``
        (the one that knows its token), still the region's: one a reload put in since
        would answer for another token (the lease then runs out on its own)."""
        current = self.stores.get(region) is store and lease.store is store
        return self._gone.get(ref) is lease and current

    def _release_dropped(
        self, region: str, store: Coordination, ref: ShardRef, lease: Lease
    ) -> None:
        with self._lock(region):  # ``acquire`` may take it again meanwhile: not that one
            if self._mine(region, store, ref, lease):
                # Its thread, if still alive, starts no write any more: a wall clock set
                # back would otherwise bring its deadline back ahead of now.
                lease.until = 0.0
                store.release(ref, self.worker_id)
                self._released(ref, region, store)

    def _lower_dropped(self, region: str, store: Coordination, ref: ShardRef, lease: Lease) -> None:
        """One lowering request of the dropped ``lease``, if it may be stored further ahead
        than a lease from now. Its thread, if still out (left to expire), checks ``until``
        before each write: it is lowered before the request is sent, so that every write
        it starts from then on lands before the lowered expiry, and every one started
        before lands within a request of now (less than the margin). A wall clock stepped
        forward never lowers it: the expiry is then nearer than a lease from now."""
        now, steady = self._now(), self.clock.elapsed()
        with self._lock(region):
            span = max(self.lease_seconds, lease.span)
            with self._beat_lock:
                if not self._mine(region, store, ref, lease) or lease.ceiling <= now + span:
                    return
                until = now + span
                lease.until = min(lease.until, until)
                # Moves ``passes`` on too: its writes from now on land by then.
                lease.may_store(until, now, steady)  # lower: ``ceiling`` stays till answered
                order = self._order()
            kept = store.renew(ref, self.worker_id, ms(now), ms(span), order=order)
            with self._beat_lock:
                if not kept:  # the token moved on: released, or someone else's now
                    lease.until = 0.0
                    if self._gone.get(ref) is lease:
                        del self._gone[ref]
                elif self._gone.get(ref) is lease:  # stored: the claim may come down to it
                    # Not ``stored``: the dropped thread's fence keeps its bound (a page
                    # is cut at the fence it had when dropped, whatever the clock did).
                    lease.ceiling = until

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


def _not_connected(exc: ReplicatorError) -> bool:
    """The region could not be connected to: its other leases' requests would wait out the
    same timeout. A request that went out and lost its answer says nothing of the next one
    (a lease whose release keeps timing out must not hold back the region's others)."""
    return isinstance(exc, UnreachableError) and not exc.request_sent
