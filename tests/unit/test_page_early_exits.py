"""The per-page shortcuts of the shard worker's hot path keep what the per-record walk did:
the parker's ``kept`` with nothing parked for a target (every record kept, none with no
target), and the replicator's decode reading a record's sequence number only on failure
(a record without one still fails the whole page)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.errors import MalformedRecordError
from dynamodb_replicator.core.parking import PoisonWatch
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.runner.parker import Parker

from .fakes import FixedTombstones, RecordingWriter
from .strategies import FIELDS

DATA = Path(__file__).parent.parent / "data"


def records(n: int) -> list[dict[str, Any]]:
    return [{"dynamodb": {"SequenceNumber": str(100 + i)}} for i in range(n)]


class _Clock:
    def now(self) -> float:
        return 0.0


def parker() -> Parker:
    shard = ShardRef("T", "arn:aws:dynamodb:r:1:table/T/stream/L", "shard-1")
    return Parker(shard, "r", None, PoisonWatch(60.0), object(), clock=_Clock())  # type: ignore[arg-type]


def test_a_page_with_nothing_parked_is_kept_whole() -> None:
    page = records(3)
    assert parker().kept(page, {"a", "b"}) == page


def test_a_page_for_no_target_keeps_no_record() -> None:
    assert parker().kept(records(3), set()) == []


def test_a_record_is_left_out_only_where_it_is_parked_for_every_target() -> None:
    page = records(3)
    p = parker()
    p.skip = {"a": {"101"}, "b": {"101", "102"}}
    assert p.kept(page, {"a", "b"}) == [page[0], page[2]]
    # A target with nothing parked keeps every record, whatever the others parked.
    assert p.kept(page, {"a", "c"}) == page


def test_a_record_without_a_sequence_number_fails_the_whole_page() -> None:
    loaded = json.loads((DATA / "golden_event.json").read_text())["Records"]
    page = copy.deepcopy(loaded)
    del page[-1]["dynamodb"]["SequenceNumber"]
    regions = ("eu-west-1", "us-east-1")
    replicator = Replicator(
        source="eu-west-1",
        writers={r: RecordingWriter(r) for r in regions},
        tombstones=FixedTombstones(),
        policy=LastWriterWins(FIELDS),
        fields=FIELDS,
    )
    try:
        with pytest.raises(MalformedRecordError, match="SequenceNumber"):
            replicator.process("T", page, from_json=True)
    finally:
        replicator.close()
