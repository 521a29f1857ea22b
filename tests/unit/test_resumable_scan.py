"""A resumable scan's page, stopped inside a slice (``ops/resumable.py``): the resume point
is the key of the last item the handler says it handled, so nothing is skipped; a handler
that writes in rounds (``in_rounds``) stops between two of them."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress
from dynamodb_replicator.ops.resumable import ResumableScan, in_rounds

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


def test_a_stop_between_rounds_resumes_after_the_last_round_written() -> None:
    progress, stop = Progress(), threading.Event()
    scan = ResumableScan(None, "us-east-1", "Orders", ["pk"], progress, [SEGMENT], stop, 50)
    written: list[str] = []

    def write(chunk: list[dict[str, Any]]) -> bool:
        written.extend(item["pk"]["S"] for item in chunk)
        if len(written) == 20:
            stop.set()  # Ctrl-C while the second round of the first slice is in flight
        return True

    def handle(chunk: list[dict[str, Any]]) -> int:
        return in_rounds(chunk, 10, write, stop)

    done = scan._page(handle, items(120), {"pk": {"S": "k119"}}, SEGMENT)
    # Mid-slice: the round in flight is written and counted, no further round starts.
    assert stop.is_set() and done == 20 and written[-1] == "k019"
    assert progress.saved[SEGMENT] == SegmentProgress({"pk": {"S": "k019"}})


def test_a_round_stopped_before_its_write_is_not_counted() -> None:
    stop = threading.Event()
    written: list[str] = []

    def write(chunk: list[dict[str, Any]]) -> bool:
        if len(written) == 25:
            stop.set()  # the rate-limit wait ended on Ctrl-C: this round writes nothing
            return False
        written.extend(item["pk"]["S"] for item in chunk)
        return True

    assert in_rounds(items(60), 25, write, stop) == 25 and written[-1] == "k024"


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 80), size=st.integers(1, 30), stop_after=st.integers(0, 10))
def test_the_count_of_rounds_is_exactly_the_prefix_written(
    count: int, size: int, stop_after: int
) -> None:
    stop = threading.Event()
    written: list[dict[str, Any]] = []

    def write(chunk: list[dict[str, Any]]) -> bool:
        written.extend(chunk)
        if len(written) >= stop_after * size:
            stop.set()
        return True

    source = items(count)
    done = in_rounds(source, size, write, stop)
    assert written == source[:done]  # nothing written past the resume point, nothing skipped
    assert done == count or done % size == 0
