"""A source region's replicator that a reload can replace without failing a page.

A reload that adds a region gives every source a replicator with one more target. The
replicator it replaces may be in the middle of pages (shard threads share it): closing it
then would refuse their writes ("cannot schedule new futures after shutdown"). So each page
takes the replicator current when it starts and keeps it to its end; a replaced replicator
is closed by the last page that used it, or at once when none does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.ports import Deadline
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.runner.regions import Replicating

__all__ = ["Replaceable"]


class Replaceable:
    """Replicating through the current replicator; ``replace`` hands new pages to another."""

    def __init__(self, current: Replicating) -> None:
        self._lock = threading.Lock()
        self.current = current
        self._pages: dict[int, int] = {}  # pages in flight per replicator (by id)
        self._replaced: dict[int, Replicating] = {}  # replaced, closed by their last page

    def process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        *,
        from_json: bool,
        regions: Collection[str] | None = None,
        deadline: Deadline = None,
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        """``Replicator.process`` on the replicator current when the page starts."""
        with self._lock:
            replicator = self.current
            self._pages[id(replicator)] = self._pages.get(id(replicator), 0) + 1
        try:
            return replicator.process(
                table,
                records,
                from_json=from_json,
                regions=regions,
                deadline=deadline,
                logged=logged,
                written=written,
                ready=ready,
            )
        finally:
            self._page_ended(replicator)

    def _page_ended(self, replicator: Replicating) -> None:
        with self._lock:
            left = self._pages.pop(id(replicator)) - 1
            if left:
                self._pages[id(replicator)] = left
            last = left == 0 and self._replaced.pop(id(replicator), None) is not None
        if last:
            replicator.close()  # its last page is over: nothing can submit to it any more

    def replace(self, replicator: Replicating) -> None:
        """New pages go to ``replicator``; the old one closes after its last page."""
        with self._lock:
            old, self.current = self.current, replicator
            idle = self._pages.get(id(old), 0) == 0
            if not idle:
                self._replaced[id(old)] = old
        if idle:
            old.close()

    def retire(self) -> None:
        """The region left the configuration: close the current replicator after its
        last page, or at once when none is out (its shards were dropped)."""
        with self._lock:
            current = self.current
            idle = self._pages.get(id(current), 0) == 0
            if not idle:
                self._replaced[id(current)] = current
        if idle:
            current.close()

    def close(self) -> None:
        """Close the current replicator and those replaced (the process stops)."""
        with self._lock:
            replicators = [self.current, *self._replaced.values()]
            self._replaced.clear()
        for replicator in replicators:
            replicator.close()
