"""A page in flight: applied in a thread of its own, so that the shard worker can read the
next page and start its writes while this one settles.

A page goes through two phases (``Replicator.process``): its writes, then its settling reads.
The shard worker keeps at most two pages of a cursor in flight, and starts a page's writes
only once the writes of the page before it are done (``wait_written``), so writes of one
key stay in stream order and a page's source-region tombstones are written before the next
page reads them; only a page's settling (with the wait for a lost answer's last chance to
land, core/landing.py) overlaps the next page's writes. Its result is
settled (counted, checkpointed) strictly in stream order, by the shard worker's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import Page

__all__ = ["Flight", "Run"]

# Applies the page's kept records to some targets; calls its argument when the writes are
# done (``Process`` with ``written``).
Run = Callable[[Callable[[], None]], BatchResult]


class Flight:
    """One page being applied: its records, whether its writes are done, its result."""

    def __init__(self, page: Page, targets: Collection[str], *, behind: bool = False) -> None:
        self.page = page
        self.targets = frozenset(targets)  # those it was applied to
        self.behind = behind  # was more of the shard there already when it was read?
        self._written = threading.Event()
        self._result: Future[BatchResult] = Future()

    @property
    def records(self) -> Sequence[Mapping[str, Any]]:
        return self.page.records

    @classmethod
    def launch(
        cls, page: Page, targets: Collection[str], run: Run, name: str, *, behind: bool = False
    ) -> Flight:
        """Start applying ``page`` in a new thread."""
        flight = cls(page, targets, behind=behind)
        threading.Thread(target=flight._run, args=(run,), name=name, daemon=True).start()
        return flight

    @classmethod
    def done(
        cls, page: Page, targets: Collection[str], result: BatchResult, *, behind: bool = False
    ) -> Flight:
        """A page with nothing to apply (every record parked): already settled."""
        flight = cls(page, targets, behind=behind)
        flight._written.set()
        flight._result.set_result(result)
        return flight

    def _run(self, run: Run) -> None:
        try:
            result = run(self._written.set)
        except BaseException as exc:  # handed to the shard worker's thread by result()
            self._result.set_exception(exc)
        else:
            self._result.set_result(result)
        finally:
            self._written.set()

    def wait_written(self) -> None:
        """Until the page's writes are done (landed, stale or given up)."""
        self._written.wait()

    def result(self) -> BatchResult:
        """The page's outcome, once settled; raises what applying it raised."""
        return self._result.result()

    def finish_quietly(self) -> BatchResult | None:
        """Wait until nothing of the page runs any more; its result, or None if it raised."""
        try:
            return self._result.result()
        except Exception:
            return None
