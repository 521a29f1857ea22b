"""What ``repair`` copies of an origin's content yields to: whatever that origin writes or
deletes of the same timestamp afterwards. Any history of writes and deletes of one
timestamp in one region, some of its records lost on the way (expired), then ``repair``
(its decision, ops.repair.resolve, applied with the real writer), then one more write or
delete there: every region must hold what the origin held before the repair, and what it
holds after that last change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.model import ItemKey

from .strategies import FIELDS
from .stream_regions import AP, EU, US, StreamRegions, T, missed_by_all
from .stream_regions import repair as _repair

# One step in eu-west-1: write content n (0..3) or delete (None), its record then either
# replicated or lost (expired before anyone read it).
STEP = st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.booleans())


def _act(regions: StreamRegions, k: ItemKey, content: int | None) -> None:
    if content is None:
        regions.delete(EU, k)
    else:
        regions.put(EU, k, **{FIELDS.timestamp: {"N": str(T)}, "content": {"N": str(content)}})


@settings(max_examples=100, deadline=None)
@given(
    history=st.lists(STEP, max_size=4),
    final=st.tuples(st.integers(0, 3), st.booleans()),
    last=st.one_of(st.none(), st.integers(4, 5)),
)
def test_the_origins_later_write_or_delete_of_a_timestamp_outranks_what_repair_copied(
    history: list[tuple[int | None, bool]], final: tuple[int, bool], last: int | None
) -> None:
    """The history ends with a write (a delete whose record was lost and left no tombstone
    anywhere cannot be known to repair: it copies the item back, as documented)."""
    regions = StreamRegions([AP, EU, US])
    try:
        k = regions.key("k")
        for content, delivered in [*history, final]:
            _act(regions, k, content)
            if delivered:
                regions.quiesce()
            else:
                missed_by_all(regions, EU)
        held = regions.contents(k)[EU]  # the origin's latest change: the winner
        _repair(regions, k)
        regions.quiesce()
        assert regions.contents(k) == {AP: held, EU: held, US: held}
        _act(regions, k, last)
        regions.quiesce()
        origin = regions.contents(k)[EU]
        assert regions.contents(k) == {AP: origin, EU: origin, US: origin}
    finally:
        regions.close()
