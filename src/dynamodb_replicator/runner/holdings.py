"""The shard leases this process holds, or may still hold in the state tables: taking one
(``acquire``), dropping one (``forget``, ``leave``), handing one back (``release``), and the
latest expiry the table may hold for each (``_lease_top``), under which the worker id's
claim is never lowered (runner/claims.py). Renewing them: runner/leases.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.retry import call_with_retries
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.claims import Claims, ms
from dynamodb_replicator.runner.reachability import TRANSIENT
from dynamodb_replicator.runner.regions import Coordination

__all__ = ["Holdings", "Lease"]


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
    # When ``ceiling`` has passed on the monotonic reading (a request's reading plus the
    # lease it sent): a wall clock stepped forward does not end it early (``_lease_top``).
    passes: float = 0.0
    # When the expiry the table last *answered* (acquire, renewal, lowering) passes on
    # the monotonic reading: the fence's bound. Unlike ``passes`` it never counts a
    # request still unanswered (a lower bound of what the table holds, not an upper one).
    held_until: float = 0.0
    span: float = 0.0  # the lease duration when taken (a reload does not change it)
    # No longer held (``forget``), its token still kept by the store: the keeper's ticks
    # bring it down after a wall clock stepped back (runner/leases.py, ``_settle_dropped``).
    dropped: bool = False
    # Its shard was told to stop (``Held.stop``): no renewal is sent for it any more, and
    # one answered since moves only what the table may hold, never its fence (each page
    # is cut at the fence it had when the stop began).
    stopping: bool = False
    # To be released once no write of it may land: its thread ended (``ended``), it was
    # left to expire (``leave``), or its release failed. The keeper's ticks send it (and
    # keep it under the claim till the table answers).
    release_due: bool = False
    # The store it was taken through: the one holding its token (a reload that changes
    # the region puts in another, which does not know it).
    store: Coordination | None = None

    def deadline(self) -> float:
        """No write of the shard starts after this (epoch seconds)."""
        return self.until - self.margin

    def fence(self, clock: Clock, now: float) -> float:
        """No write of the shard starts after this, in the frame of ``now`` (the caller's
        one wall reading of ``clock``): the deadline, or sooner when the monotonic reading
        has the lease run out first (the wall clock stepped back since it was renewed, and
        it is not lowered yet). The monotonic bound is turned into wall time against
        ``now`` itself, never a reading of its own: compared with ``now``, it is the
        monotonic reading's own test, whatever the wall clock did before or since. So a
        write started before it lands before ``until`` on the wall clock and before
        ``held_until`` on the monotonic reading (what the table answered it holds, not
        what a renewal still unanswered may store), whichever way the wall clock steps."""
        # Read after ``now``: a later monotonic reading only brings the fence nearer. The
        # monotonic part is summed first (small numbers), so that, added to ``now``, it
        # rounds to ``now`` or below once it is not positive: the comparison stays exact.
        left = self.held_until - clock.elapsed() - self.margin
        return min(self.until - self.margin, now + left)

    def may_store(self, until: float, now: float, steady: float) -> None:
        """A request sent at ``now`` (``steady`` on the monotonic reading) may store
        ``until``: the table may hold it until it has passed on both readings."""
        self.ceiling = max(self.ceiling, until)
        self.passes = max(self.passes, steady + until - now)

    def stored(self, until: float, now: float, steady: float) -> None:
        """The table answered a request sent at ``now`` (``steady``) storing ``until``: it
        holds that lease until then by the monotonic reading (answers come in the order
        sent, so a later one never ends sooner on that reading)."""
        self.held_until = max(self.held_until, steady + until - now)


class Holdings(Claims):
    """The claims part (``Claims``) and the leases: ``leases`` (shard -> Lease) held now."""

    def __init__(self, worker_id: str, instance: str, clock: Clock, lease_seconds: float) -> None:
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
            now, steady = self._now(), self.clock.elapsed()  # the lease lasts at least this
            inherit, store = self.inheriting(region), self.stores[region]
            with self._beat_lock:
                until = self._expiry(region, now)
                if until <= now:
                    return None
                # Once sent, it may land: kept under the claim until it is answered.
                before = self._gone.get(ref)
                sent = Lease(region, until, self.margin, span=self.lease_seconds, store=store)
                if before is not None:
                    sent.ceiling, sent.passes = before.ceiling, before.passes
                sent.may_store(until, now, steady)
                self._gone[ref] = sent
            try:
                taken = store.acquire(
                    ref, self.worker_id, ms(now), ms(until - now), inherit=inherit
                )
            except BaseException:
                with self._beat_lock:
                    if self._gone.get(ref) is sent and before and before.store is store:
                        # No answer: the table holds ``before`` or ``sent``, both ours
                        # through this store: a drop's due release is kept (else nothing
                        # would ever send it).
                        sent.dropped, sent.release_due = before.dropped, before.release_due
                raise
            with self._beat_lock:
                if taken:  # what the table held of it before is replaced
                    self._gone.pop(ref, None)
                    lease = Lease(region, until, self.margin, span=self.lease_seconds, store=store)
                    lease.may_store(until, now, steady)
                    lease.stored(until, now, steady)
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

    def fix_fences(self, leases: list[Lease]) -> None:
        """``leases``' shards are told to stop: their fences stay where they are now, before
        any of them is forgotten (``forget`` waits for the region's renewal in flight; the
        others must not be renewed meanwhile)."""
        with self._beat_lock:
            for lease in leases:
                lease.stopping = True

    def forget(self, ref: ShardRef) -> None:
        """Stop renewing ``ref``'s lease (the shard is being dropped)."""
        lease = self.leases.get(ref)
        if lease is None:
            return
        with self._lock(lease.region), self._beat_lock:  # waits for a renewal still out
            self.leases.pop(ref, None)
            lease.dropped = True
            self._gone[ref] = lease  # in the table until released or expired

    def leave(self, ref: ShardRef, lease: Lease) -> None:
        """``lease`` is left to expire, its thread still in a request (``leaving``); the
        keeper releases it once it has run out (``release_due``)."""
        self._left = {r: held for r, held in self._left.items() if self._running(held)}
        self._left[ref] = lease
        self.ended(ref, lease)

    def ended(self, ref: ShardRef, lease: Lease) -> None:
        """``lease``, dropped (``forget``), is to be handed back by the keeper's ticks once
        no write of it may land (at once when its thread has ended; once run out when it
        was left to expire): until the table answers a release, the claim is kept above
        it (``_lease_top``). Every dropped lease comes here, released by its holder or
        not: one the table may hold ahead of the clock (stored while the wall clock ran
        ahead) is then never forgotten while it pins the shard."""
        with self._beat_lock:
            if self._gone.get(ref) is lease:
                lease.release_due = True

    def ended_kept(self, ref: ShardRef, lease: Lease) -> None:
        """``ended`` for a lease a restart kept (its thread ended) that the round after it
        did not take again: a failed acquire of it put another dropped Lease, one with no
        thread, in its place in ``_gone`` (``acquire``); through the same store, that one
        is due too (the table holds one of the two, both ours under its token)."""
        with self._beat_lock:
            gone = self._gone.get(ref)
            if gone is lease or (gone is not None and gone.dropped and gone.store is lease.store):
                gone.release_due = True

    def _running(self, lease: Lease) -> bool:
        """The thread of ``lease``, left to expire, may still start a write, or one it
        started may still land: its writes start before its fence (``Lease.fence``) and
        land within a request (less than the margin), so before ``passes`` on the
        monotonic reading, whatever the wall clock did (a lowering moves it on)."""
        return self.clock.elapsed() < lease.passes

    def _still_left(self, ref: ShardRef) -> bool:
        """``ref``'s lease was left to expire and its thread may still write: the store
        holding its token would take it again at once, and a second thread would write
        the shard while the first one's request may still land (at most one writer per
        shard)."""
        left = self._left.get(ref)
        return left is not None and self._running(left)

    def leaving(self, region: str) -> bool:
        """A lease left to expire (its thread may still write) lives in ``region``: the
        claim must outlive it (so a process under the same id cannot take the shard)."""
        return any(held.region == region and self._running(held) for held in self._left.values())

    def holds_leases(self, region: str) -> bool:
        """A lease of ours may still live in ``region``'s table: held, or dropped but not
        released (a release that failed, an acquire whose answer was lost), up to its
        ceiling. The claim there must not be given back while one may."""
        now, steady = self._now(), self.clock.elapsed()
        with self._beat_lock:
            self._lease_top(region, now)  # drops the gone ones past on both readings
            ours = (*self.leases.values(), *self._gone.values())
            return any(
                lease.region == region and (lease.ceiling > now or lease.passes > steady)
                for lease in ours
            )

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
        with self._beat_lock:
            gone = self._gone.get(ref)
            if gone is not None and gone.region == region:
                # No write of it starts once a release may land (as ``_release_dropped``).
                gone.until = 0.0
        try:
            call_with_retries(
                lambda: store.release(ref, self.worker_id), TRANSIENT, clock=self.clock
            )
        except ReplicatorError:
            with self._beat_lock:  # the keeper's ticks send it again (``_settle_dropped``)
                gone = self._gone.get(ref)
                if gone is not None and gone.region == region and gone.dropped:
                    gone.release_due = True
            raise
        self._released(ref, region, store)

    def _released(self, ref: ShardRef, region: str, store: Coordination) -> None:
        """``store`` answered ``ref``'s release in ``region``: nothing of it is ours there,
        unless it was taken through another store (which holds its token)."""
        with self._beat_lock:
            gone = self._gone.get(ref)
            if gone is not None and gone.region == region and gone.store in (None, store):
                del self._gone[ref]

    def _lease_top(self, region: str, now: float) -> float:
        """The latest expiry a lease of ours may have in ``region``'s table, live at
        ``now``: held, or gone but not released (0: none). Called under ``_beat_lock``.
        A gone one is kept until its ceiling has passed on the wall clock and on the
        monotonic reading: a wall clock stepped forward past it, then back, finds it
        still stored, and the claim must not come below it then. One to be released is
        kept until it is (while its store is the region's, or the region has none: marked
        down, it is out of ``stores`` until it answers again, the same store with it):
        stored under a clock that ran ahead, it may outlive both readings in the table by
        the whole step."""
        steady = self.clock.elapsed()
        self._gone = {
            ref: lease
            for ref, lease in self._gone.items()
            if lease.ceiling > now
            or lease.passes > steady
            or (lease.release_due and self.stores.get(lease.region, lease.store) is lease.store)
        }
        ours = (*self.leases.values(), *self._gone.values())
        return max((lease.ceiling for lease in ours if lease.region == region), default=0.0)

    def lost(self, ref: ShardRef) -> bool:
        lease = self.leases.get(ref)
        return lease is not None and lease.until == 0.0
