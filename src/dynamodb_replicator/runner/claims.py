"""The worker id's claim in each region's state table (``worker|ID``), as the lease keeper
holds it (runner/leases.py): taken at start, renewed on every tick, and the cap of every
lease in its region (a lease never outlives the claim, so a process restarted under the
same id never finds its predecessor's claim expired while one of its leases is live).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.errors import RetryableTargetError
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.runner import liveness
from dynamodb_replicator.runner.regions import Coordination

__all__ = ["Claims", "Unreachable", "ms"]

log = logging.getLogger("dynamodb_replicator.runner.leases")  # one logger for the keeper

Unreachable = Mapping[str, tuple[float, str]]
_CLAIM_ATTEMPTS = 8  # at start, a region that answers but fails this often is an error


@dataclass(frozen=True, slots=True)
class _Window:
    """When the window to take our own leases at once ends (``Claims.inheriting``): on the
    wall clock and on the monotonic reading."""

    wall: float
    steady: float


@dataclass(slots=True)
class _Beat:
    """A heartbeat in flight: ``floor`` is the least expiry of those out with it, and
    ``margin_floor`` the least margin (the table keeps whichever lands last)."""

    region: str
    until: float
    floor: float
    margin: float
    margin_floor: float


class Claims:
    """The claims part of the lease keeper: ``claims`` (region -> our claim's expiry)."""

    def __init__(self, worker_id: str, instance: str, clock: Clock, lease_seconds: float) -> None:
        self.worker_id, self.instance, self.clock = worker_id, instance, clock
        self.lease_seconds = lease_seconds
        self.stores: Mapping[str, Coordination] = {}  # region -> the leases' store
        self.unreachable: Unreachable = {}  # what the heartbeat tells ``status``
        self.claims: dict[str, float] = {}  # region -> our claim's expiry (epoch seconds)
        self.claimed_margins: dict[str, float] = {}  # region -> the margin our claim bears
        self._beats: dict[int, _Beat] = {}  # heartbeats in flight (see ``heartbeat``)
        self._beat_lock = threading.Lock()
        self._sent = itertools.count(1)  # ``_order``
        self._beat_ids = 0
        self._generation = 0  # ``reset_claims`` moves it: older answers are not recorded
        self._regional: dict[str, int] = {}  # the same, per region (``forget_claim``)
        self.dead: Callable[[str], bool] = liveness.dead  # a claim's process is gone
        # region -> until when ``acquire`` may take the dead predecessor's leases (``claim``)
        self.inherit_until: dict[str, _Window] = {}
        # A claim's process -> when proven dead, on the monotonic reading: the margin after
        # it is a wait, which a wall clock stepped forward (NTP) would cut short.
        self._dead_at: dict[str, float] = {}
        # The widest margin this process ever had: a reload may shorten the lease (and the
        # request timeout) while requests sent under the old one are still out.
        self.widest_margin = 0.0

    @property
    def margin(self) -> float:
        """A lease's deadline comes this long before its expiry: longer than any request
        lives (the config refuses a request timeout that breaks this)."""
        return self.lease_seconds * defaults.LEASE_MARGIN_FRACTION

    def _now(self) -> float:
        return self.clock.now()

    # -- the worker id's claim -----------------------------------------------------------
    def claim(self, region: str, stopping: threading.Event) -> None:
        """Claim the worker id in ``region`` at start. A claim another process renews
        refuses the start (the id runs twice); one left to expire (a process that died) is
        taken over when it expires, at most one lease later; one whose process is proven
        dead (runner/liveness.py) is taken over a margin after that proof (``try_claim``)."""
        first: WorkerIdInUseError | None = None
        failures = 0
        while not stopping.is_set():
            try:
                if self.try_claim(region):
                    return
            except RetryableTargetError:
                failures += 1  # the keeper's store makes one attempt per call
                if failures >= _CLAIM_ATTEMPTS:
                    raise
            except WorkerIdInUseError as held:
                if first is None:
                    first = held
                    log.info(
                        "worker id held by another process: waiting to see it renewed "
                        "(refuse) or expire (take over)",
                        extra={"worker": self.worker_id, "region": region},
                    )
                elif (held.holder, held.expires_ms) != (first.holder, first.expires_ms):
                    raise  # renewed meanwhile: the same id runs in another process
            stopping.wait(0.2)

    def try_claim(self, region: str) -> bool:
        """One attempt at the claim in ``region``: True once it is ours, False while a dead
        holder's margin runs; WorkerIdInUseError while a live holder has it.

        A holder proven dead now sent every request before now, so each has landed or
        failed within the request lifetime, shorter than the margin. After the margin
        nothing of it can land any more: its claim may be taken over, and its leases,
        however long they still run (``inherit_until``). One proof serves every region
        (the margin is counted from the first). The margin is the wider of ours and the
        widest the dead one had (written into its claim): its config may have had a
        longer lease, and so a longer request timeout, than ours."""
        try:
            self.heartbeat(region)
            return True
        except WorkerIdInUseError as held:
            if not self.dead(held.holder):
                raise
            if held.holder not in self._dead_at:
                self._dead_at[held.holder] = self.clock.elapsed()
                log.info(
                    "worker id held by a process that is dead: taken over after the margin",
                    extra={"worker": self.worker_id, "region": region, "holder": held.holder},
                )
            margin = max(self.margin, held.margin_ms / 1000)
            if self.clock.elapsed() < self._dead_at[held.holder] + margin:
                return False
            self.heartbeat(region, replacing=held.holder)
            return True

    def heartbeat(
        self, region: str, store: Coordination | None = None, *, replacing: str = ""
    ) -> None:
        """Renew the claim in ``region`` (through ``store``, default its store now); leases
        there are capped at its new expiry.

        The table takes our heartbeats in the order we sent them (``order``): one landing
        after a later one is refused. A later one may so lower the stored claim (a wall
        clock stepped back, or a reload that shortened the lease), and then its expiry
        becomes our claim before it is sent. It never goes below a lease of ours the table
        may hold live (``_lease_top``): a lease never outlives the claim as stored.

        The tick's heartbeat and an ``acquire``'s may be out together, and either may land
        last. So an answer records not its own expiry but the least of those of every
        heartbeat in flight with it (its *floor*): the stored claim is one of them (or of
        a heartbeat sent after them, whose expiry we took before sending it)."""
        store = self.stores[region] if store is None else store
        now, sent = self._now(), self.clock.elapsed()
        self.widest_margin = max(self.widest_margin, self.margin)
        with self._beat_lock:
            until = max(now + self.lease_seconds, self._lease_top(region, now))
            generation, beat = self._beat_out(region, until, self.widest_margin)
            if region in self.claims:
                self.claims[region] = min(self.claims[region], until)
            # Read with the order: the later sent, the fresher its unreachable regions.
            order, unreachable = self._order(), self.unreachable
        try:
            store.heartbeat(
                self.worker_id,
                ms(until),
                unreachable,
                instance=self.instance,
                now_ms=ms(now),
                replacing=replacing,
                margin_ms=ms(self.widest_margin),
                order=order,
            )
        finally:
            with self._beat_lock:
                done = self._beats.pop(beat)
        with self._beat_lock:
            # Not an answer from a table left behind (a tick's snapshot may hold one).
            if generation == self._era(region) and self.stores.get(region) is store:
                self.claims[region] = done.floor
                self.claimed_margins[region] = done.margin_floor
                if replacing:
                    self._inherit(region, now, sent)

    def _order(self) -> int:
        """The next number of this process's count of the heartbeats and renewals it
        sends (the state table applies each claim's and lease's in this order)."""
        return next(self._sent)

    def order_after_sent(self) -> int:
        """A place in the count after every heartbeat sent so far: a claim given back with
        it (``forget_worker``) refuses each of them still on its way."""
        return self._order()

    def _lease_top(self, region: str, now: float) -> float:
        """The latest expiry a lease of ours may have in ``region``'s table, live at ``now``
        (0: none): runner/holdings.py. Called under ``_beat_lock``."""
        return 0.0

    def _inherit(self, region: str, now: float, sent: float) -> None:
        """Our claim replaced a dead process's at ``now`` (``sent`` on the monotonic
        reading): until it expires (``now`` plus a lease, taken before the request) no other
        process can hold the claim, so none holds a live lease of ours (each is capped at
        its claim) but the dead one. An acquire sent a margin before that expiry lands
        before it (a request lives less than the margin), so until then any lease of ours
        may be taken at once (``inheriting``)."""
        ends = self.lease_seconds - self.margin
        self.inherit_until[region] = _Window(now + ends, sent + ends)

    def inheriting(self, region: str) -> bool:
        """Whether an acquire sent now in ``region`` may take a lease of ours at once.

        The window ends at the earlier of two readings: the wall clock's, as the other
        processes judge the stored expiry; and the monotonic one's, a lease less the
        margin after the request, so that a wall clock stepped back (NTP) does not
        stretch it while the claim runs out for the others."""
        window = self.inherit_until.get(region)
        if window is None:
            return False
        return self._now() < window.wall and self.clock.elapsed() < window.steady

    def _beat_out(self, region: str, until: float, margin: float) -> tuple[tuple[int, int], int]:
        """Note a heartbeat to ``until`` with ``margin`` going out: its era, and its id in
        ``_beats``. Called under ``_beat_lock``."""
        generation, beat = self._era(region), self._beat_ids
        self._beat_ids += 1
        floor, margin_floor = until, margin
        for other in self._beats.values():
            if other.region == region:
                floor = min(floor, other.until)
                other.floor = min(other.floor, until)
                margin_floor = min(margin_floor, other.margin)
                other.margin_floor = min(other.margin_floor, margin)
        self._beats[beat] = _Beat(region, until, floor, margin, margin_floor)
        return generation, beat

    def reset_claims(self) -> None:
        """Forget every claim (the state table changed): the next ``acquire`` in a region
        claims the worker id in the new table first; answers still out are not recorded."""
        with self._beat_lock:
            self._generation += 1
            self.claims = {}
            self.claimed_margins = {}
            self.inherit_until = {}

    def forget_claim(self, region: str) -> None:
        """Forget the claim in ``region`` (a reload changed its endpoint or role): the next
        ``acquire`` there claims the worker id first; answers still out are not recorded."""
        with self._beat_lock:
            self._regional[region] = self._regional.get(region, 0) + 1
            self.claims = {r: until for r, until in self.claims.items() if r != region}
            self.inherit_until.pop(region, None)
            self.claimed_margins.pop(region, None)

    def _era(self, region: str) -> tuple[int, int]:
        """Moved by ``reset_claims`` and ``forget_claim``: older answers are not recorded."""
        return self._generation, self._regional.get(region, 0)


def ms(seconds: float) -> int:
    """Epoch seconds as the state table's milliseconds."""
    return int(seconds * 1000)
