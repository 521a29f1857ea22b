"""Resumable scans: how far each segment of a copy has come, and the port that keeps it.

A segment is not started, or has copied everything up to a key (resume after it), or is
done. The copy saves its progress after every page, so a resumed run skips what is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from dynamodb_replicator.core.model import AttributeValue

__all__ = ["ScanProgressStore", "ScanSegment", "SegmentProgress"]


@dataclass(frozen=True, slots=True)
class ScanSegment:
    """Segment ``segment`` of ``segments`` of ``table``, copied from ``source`` to ``target``."""

    table: str
    source: str
    target: str
    segment: int
    segments: int


@dataclass(frozen=True, slots=True)
class SegmentProgress:
    """``last_key``: the last key copied (resume after it); ``done``: nothing is left."""

    last_key: Mapping[str, AttributeValue] | None = None
    done: bool = False

    @classmethod
    def after_page(cls, next_key: Mapping[str, AttributeValue] | None) -> SegmentProgress:
        """The progress once a page is copied; ``next_key`` is Scan's LastEvaluatedKey."""
        return cls(next_key) if next_key else cls(done=True)

    @property
    def started(self) -> bool:
        return self.done or self.last_key is not None


class ScanProgressStore(Protocol):
    """Where segment progress is kept (the target region's state table)."""

    def load_progress(self, segment: ScanSegment) -> SegmentProgress: ...

    def save_progress(self, segment: ScanSegment, progress: SegmentProgress) -> None: ...

    def clear_progress(self, segment: ScanSegment) -> None:
        """Forget the segment's progress (a new run starts from the beginning)."""
        ...
