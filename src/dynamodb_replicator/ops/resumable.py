"""A parallel scan that works through each page in slices and saves where it stands.

The long commands (add-region's copy in and merge out, version-items) share it: each
segment's position is saved after every page, and when ``stop`` is set (Ctrl-C, see
``cli/interrupt.py``) the segment stops inside its slice, between two writes (its handler
writes in rounds of a few items, ``in_rounds``, or one item at a time, and says how many it
wrote), and saves the key of the last item written, so a resumed run skips nothing, repeats
at most the round in flight, and the stop waits for one round's writes, not a whole slice's
or page's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.scan import parallel_scan
from dynamodb_replicator.core.progress import ScanProgressStore, ScanSegment, SegmentProgress

__all__ = ["ResumableScan", "SliceHandler", "in_rounds"]

Item = dict[str, Any]
# Handles one slice of a page: how many of its items, in order, it handled (all of them,
# or fewer when ``stop`` was set: a handler whose writes go one at a time stops between two).
SliceHandler = Callable[[list[Item]], int]


# Writes one round of a slice (a few items), or returns False without writing when ``stop``
# was set before it began (a rate-limit wait ends early on Ctrl-C).
RoundWriter = Callable[[list[Item]], bool]


def in_rounds(items: list[Item], size: int, write: RoundWriter, stop: threading.Event) -> int:
    """Write ``items`` ``size`` at a time, in order, and stop between two rounds once
    ``stop`` is set: how many items, from the first, were written. A round is written whole
    or not at all, so the resume point (the last item of the last round written) skips
    nothing, and Ctrl-C waits for one round in flight, not for the whole slice."""
    done = 0
    for start in range(0, len(items), size):
        if stop.is_set():
            break
        chunk = items[start : start + size]
        if not write(chunk):
            break
        done = start + len(chunk)
    return done


@dataclass(frozen=True, slots=True)
class ResumableScan:
    """Scan ``physical`` in ``region`` from the saved progress of ``scans`` on."""

    client: Any
    region: str
    physical: str
    key_names: Sequence[str]
    progress: ScanProgressStore
    scans: Sequence[ScanSegment]
    stop: threading.Event
    slice_size: int = 50
    page_size: int = 500

    def restart(self) -> None:
        """Forget the saved progress: the next ``run`` scans from the beginning."""
        for scan in self.scans:
            self.progress.clear_progress(scan)

    def run(self, handle: SliceHandler, on_items: Callable[[int], None]) -> int:
        """Run ``handle`` over every slice not handled yet; returns how many segments
        resumed from saved progress. Stops early (progress saved) when ``stop`` is set."""
        saved = {scan.segment: self.progress.load_progress(scan) for scan in self.scans}

        def on_page(segment: int, items: list[Item], after: Any) -> None:
            done = self._page(handle, items, after, self.scans[segment])
            on_items(done)

        parallel_scan(
            self.client,
            self.physical,
            region=self.region,
            segments=len(self.scans),
            on_page=on_page,
            resume={s: dict(p.last_key) if p.last_key else None for s, p in saved.items()},
            skip=frozenset(s for s, p in saved.items() if p.done),
            stop=self.stop,
            page_size=self.page_size,
        )
        return sum(p.started for p in saved.values())

    def _page(self, handle: SliceHandler, items: list[Item], after: Any, scan: ScanSegment) -> int:
        """Handle a page slice by slice; save the progress; how many items were handled."""
        done = 0
        for start in range(0, len(items), self.slice_size):
            if self.stop.is_set():
                break
            chunk = items[start : start + self.slice_size]
            done = start + handle(chunk)
            if done < start + len(chunk):
                break
        if done == len(items):
            self.progress.save_progress(scan, SegmentProgress.after_page(after))
        elif done:  # stopped in the page: resume after the last item handled
            last = items[done - 1]
            key = {name: last[name] for name in self.key_names}
            self.progress.save_progress(scan, SegmentProgress(key))
        return done
