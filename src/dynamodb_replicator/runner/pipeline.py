"""A page in flight: applied in a thread of its own, so that the shard worker can read the
next pages while this one writes and settles.

A page goes through three phases (``Replicator.process``): the reads that decide its writes
(the source region's tombstones, the plan, each target's tombstone read P0), its writes,
then its settling reads. The shard worker keeps up to ``defaults.PAGES_IN_FLIGHT`` pages
of a cursor in flight. A page that shares no key with a page before it still writing
(``early``) goes ahead whole, its reads and its writes beside those pages': they touch
only their own keys, so for its keys its reads see what they would see after them, and no
write of one key overtakes another. A page that shares a key (or has one it cannot read)
waits, before its reads, until the writes of every page before it are done, so that its
reads see their source-region tombstones and writes and its writes follow theirs: writes
of one key stay in stream order. A page's settling (with the wait for a lost answer's last
chance to land, core/landing.py) overlaps the next pages whatever their keys. Results are
settled (counted, checkpointed) strictly in stream order, by the shard worker's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import Page

__all__ = ["Flight", "Run", "StoppedPageError", "page_keys"]

# Applies the page's kept records to some targets; calls its first argument when the
# writes are done, its second before each target's writes, once that target's reads are
# done (the writes wait until it returns: ``Process`` with ``written`` and ``ready``).
Run = Callable[[Callable[[], None], Callable[[], None]], BatchResult]


class StoppedPageError(RuntimeError):
    """The shard stopped before this page's writes started: none starts (the page is
    replayed from the checkpoint by whoever holds the shard next)."""


def page_keys(records: Iterable[Mapping[str, Any]]) -> frozenset[ItemKey] | None:
    """The item keys of ``records``; None when one has no readable key (such a page is
    taken to share every key)."""
    keys: set[ItemKey] = set()
    try:
        for record in records:
            keys.add(ItemKey.from_attributes(record["dynamodb"]["Keys"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return frozenset(keys)


class Flight:
    """One page being applied: its records, whether its writes are done, its result."""

    def __init__(
        self,
        page: Page,
        targets: Collection[str],
        *,
        behind: bool = False,
        after: Sequence[Flight] = (),
        keys: frozenset[ItemKey] | None = None,
        stop: threading.Event | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.page = page
        self.targets = frozenset(targets)  # those it was applied to
        self.behind = behind  # was more of the shard there already when it was read?
        self.keys = keys  # the page's item keys (None: unknown, shares every key)
        # The pages before it still in flight, whose writes it waits for (none once
        # ``launch`` found it shares no key with them): their events only (a flight
        # holding the flights before it would hold every page of the shard).
        self._written: threading.Event = threading.Event()
        self._before = tuple(f._written for f in after)
        self._stop = stop  # the shard's: once set, no write of this page starts
        self._ended = threading.Event()  # nothing of the page runs any more
        self._result: Future[BatchResult] = Future()
        # When its reads began and ended, its writes began and ended (``clock.elapsed``):
        # how long each took tells the shard worker when to read the next page.
        self._clock = clock
        self._times: dict[str, float] = {}

    @property
    def records(self) -> Sequence[Mapping[str, Any]]:
        return self.page.records

    def shares_keys(self, others: Iterable[Flight]) -> bool:
        """Does this page write a key that one of ``others`` still writing writes too?"""
        for other in others:
            if other._written.is_set():
                continue  # only settling left: the next page's writes may overlap it
            if self.keys is None or other.keys is None or self.keys & other.keys:
                return True
        return False

    @classmethod
    def launch(
        cls,
        page: Page,
        targets: Collection[str],
        run: Run,
        name: str,
        *,
        behind: bool = False,
        after: Sequence[Flight] = (),
        stop: threading.Event | None = None,
        clock: Clock | None = None,
    ) -> Flight:
        """Start applying ``page`` in a new thread, its writes after those of ``after``
        (the pages before it still in flight), its reads too; neither waits when it
        shares no key with one of them still writing. Once ``stop`` is set, its writes that
        have not started never start (``StoppedPageError``). ``clock`` times its phases
        (``reads_s``, ``writes_s``)."""
        keys = page_keys(page.records)
        flight = cls(page, targets, behind=behind, after=after, keys=keys, stop=stop, clock=clock)
        if not flight.shares_keys(after):
            flight._before = ()  # early: no page before it writes a key of its own
        threading.Thread(target=flight._run, args=(run,), name=name, daemon=True).start()
        return flight

    @classmethod
    def done(
        cls, page: Page, targets: Collection[str], result: BatchResult, *, behind: bool = False
    ) -> Flight:
        """A page with nothing to apply (every record parked): already settled."""
        flight = cls(page, targets, behind=behind)
        flight._written.set()
        flight._ended.set()
        flight._result.set_result(result)
        return flight

    def _run(self, run: Run) -> None:
        try:
            self._hold()
            self._note("reading")
            result = run(self._done_writing, self._ready)
        except BaseException as exc:  # handed to the shard worker's thread by result()
            self._result.set_exception(exc)
        else:
            self._result.set_result(result)
        finally:
            self._written.set()
            self._ended.set()

    def _hold(self) -> None:
        """Wait for the pages before it it must follow; raise once the shard stopped."""
        self._wait_before()
        if self._stop is not None and self._stop.is_set():
            raise StoppedPageError("the shard stopped before this page's writes started")

    def _ready(self) -> None:
        """A region's reads of the page are done (called before each region's writes):
        they start unless the shard stopped meanwhile (the pages before it it waits for
        were written before its reads began)."""
        self._note("read")
        self._hold()
        self._note("writing")

    def _done_writing(self) -> None:
        self._note("written")
        self._written.set()

    def _note(self, phase: str) -> None:
        if self._clock is not None and phase not in self._times:
            self._times[phase] = self._clock.elapsed()

    def _took(self, began: str, ended: str) -> float | None:
        times = self._times
        return times[ended] - times[began] if began in times and ended in times else None

    @property
    def reads_s(self) -> float | None:
        """How long its reads took (None: not timed, or not done)."""
        return self._took("reading", "read")

    @property
    def writes_s(self) -> float | None:
        """How long its writes took, from when they could start (None: not timed, or
        not done)."""
        return self._took("writing", "written")

    def _wait_before(self) -> None:
        for before in self._before:
            before.wait()

    @property
    def ended(self) -> bool:
        """Does nothing of the page run any more (its result is there)?"""
        return self._ended.is_set()

    def wait_ended(self, clock: Clock, seconds: float) -> bool:
        """Let at most ``seconds`` go by on ``clock`` until nothing of the page runs any
        more (its result is there); whether that is so."""
        return clock.wait(seconds, self._ended) or self.ended

    def result(self) -> BatchResult:
        """The page's outcome, once settled; raises what applying it raised."""
        return self._result.result()

    def finish_quietly(self) -> BatchResult | None:
        """Wait until nothing of the page runs any more; its result, or None if it raised."""
        try:
            return self._result.result()
        except Exception:
            return None
