"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stream_regions import AP, EU, US, StreamRegions


@pytest.fixture
def regions() -> Iterator[StreamRegions]:
    """Three regions with streams and a replicator each (tests/unit/stream_regions.py)."""
    world = StreamRegions([AP, EU, US])
    yield world
    world.close()
