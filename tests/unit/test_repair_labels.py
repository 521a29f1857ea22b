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
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.ops.repair import resolve

from .strategies import FIELDS
from .stream_regions import SUFFIX, TABLE, StreamRegions

AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
T = 1_700_000_000_000

# One step in eu-west-1: write content n (0..3) or delete (None), its record then either
# replicated or lost (expired before anyone read it).
STEP = st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.booleans())


class _Clock:
    def now(self) -> float:
        return 1_000_000.0


def _act(regions: StreamRegions, k: ItemKey, content: int | None) -> None:
    if content is None:
        regions.delete(EU, k)
    else:
        regions.put(EU, k, **{FIELDS.timestamp: {"N": str(T)}, "content": {"N": str(content)}})


def _repair(regions: StreamRegions, k: ItemKey) -> None:
    """``repair``'s decision for ``k``, from every region's item and tombstone, applied
    with each region's writer."""
    items = {name: store.item(TABLE, k) for name, store in regions.stores.items()}
    tombs = {
        name: TombstoneTable(store, FIELDS, SUFFIX).read(TABLE, [k]).get(k)
        for name, store in regions.stores.items()
    }
    ops = resolve(k, items, tombs, policy=LastWriterWins(FIELDS), fields=FIELDS) or {}
    options = WriterOptions(max_in_flight=1, backoff=Backoff(attempts=2, base=0.0))
    for name, op in ops.items():
        protocol = WriteProtocol(
            regions.stores[name], LastWriterWins(FIELDS), FIELDS, _Clock(), SUFFIX, 3600
        )
        result = StoreWriter(protocol, options).apply(TABLE, [op])
        assert result.error is None, result


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
                regions.read[EU] = len(regions.stores[EU].stream)
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
