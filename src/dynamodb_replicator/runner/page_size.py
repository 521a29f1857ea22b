"""How many records a shard's cursor reads per page: fewer after a page ran out of time.

A page's first requests (the tombstone reads of all its keys) grow with the page; on a slow
network a full page may never get to its first write before its deadline, and would be
read and replayed whole forever. So a page that hit the deadline halves the next ones (down
to one record, which always starts: its deadline check comes before its only write); after
``calm`` pages in a row that did not, the size doubles back toward the configured limit.
Each cursor has its own (runner/shard_state.py): a target split off after a miss keeps the
halved size while the others read on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dynamodb_replicator.core import defaults

__all__ = ["PageSize"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PageSize:
    """The page limit of one cursor (``limit``), between 1 and ``most``."""

    most: int
    calm: int = defaults.PAGE_CALM_PAGES
    limit: int = field(init=False)
    _in_time: int = field(default=0, init=False)  # pages in time in a row

    def __post_init__(self) -> None:
        self.limit = self.most

    def split(self) -> PageSize:
        """The size a cursor split off from this one starts with: this limit."""
        size = PageSize(self.most, self.calm)
        size.limit = self.limit
        return size

    def settled(self, *, late: bool) -> None:
        """A page settled; ``late``: one of its writes found no time left to start."""
        if late:
            self.limit, self._in_time = max(1, self.limit // 2), 0
            log.info("page size halved: a page ran out of time", extra={"limit": self.limit})
            return
        self._in_time += 1
        if self._in_time >= self.calm and self.limit < self.most:
            self.limit, self._in_time = min(self.most, self.limit * 2), 0
