"""A resumable scan's page, stopped inside a slice (``ops/resumable.py``): the resume point
is the key of the last item the handler says it handled, so nothing is skipped."""

from __future__ import annotations

import threading
from typing import Any

from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress
from dynamodb_replicator.ops.resumable import ResumableScan

SEGMENT = ScanSegment("Orders", "us-east-1", "us-east-1", 0, 1)


class Progress:
    def __init__(self) -> None:
        self.saved: dict[ScanSegment, SegmentProgress] = {}

    def load_progress(self, segment: ScanSegment) -> SegmentProgress:
        return self.saved.get(segment, SegmentProgress())

    def save_progress(self, segment: ScanSegment, progress: SegmentProgress) -> None:
        self.saved[segment] = progress

    def clear_progress(self, segment: ScanSegment) -> None:
        self.saved.pop(segment, None)


def items(count: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"k{n:03d}"}} for n in range(count)]


def test_a_stop_inside_a_slice_resumes_after_the_last_item_handled() -> None:
    progress, stop = Progress(), threading.Event()
    scan = ResumableScan(None, "us-east-1", "Orders", ["pk"], progress, [SEGMENT], stop, 10)
    handled: list[str] = []

    def one_at_a_time(chunk: list[dict[str, Any]]) -> int:
        for count, item in enumerate(chunk):
            if stop.is_set():
                return count
            handled.append(item["pk"]["S"])
            if len(handled) == 13:
                stop.set()  # Ctrl-C while the second slice is being written
        return len(chunk)

    done = scan._page(one_at_a_time, items(50), {"pk": {"S": "k049"}}, SEGMENT)
    assert stop.is_set() and done == 13 and handled[-1] == "k012"
    assert progress.saved[SEGMENT] == SegmentProgress({"pk": {"S": "k012"}})
