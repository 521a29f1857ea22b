"""The Lambda handler's batch semantics, with fake ports (the wire is covered by integration)."""

from __future__ import annotations

import base64
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.awslambda.handler import process_event
from dynamodb_replicator.core.errors import MalformedRecordError, UnreachableError
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.replicator import MissingTimestamp, Replicator

from .fakes import FixedTombstones, RecordingWriter
from .strategies import FIELDS

DATA = Path(__file__).parent.parent / "data"
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-1")


def event() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / "golden_event.json").read_text())
    return loaded


def replicator(
    missing: MissingTimestamp = MissingTimestamp.FAIL, **writers: RecordingWriter
) -> Replicator:
    all_writers = {r: writers.get(r.replace("-", "_"), RecordingWriter(r)) for r in REGIONS}
    return Replicator(
        source="eu-west-1",
        writers=all_writers,
        tombstones=FixedTombstones(),
        policy=LastWriterWins(FIELDS),
        fields=FIELDS,
        missing_timestamp=missing,
    )


def test_record_without_timestamp_is_reported_with_its_sequence_number() -> None:
    response = process_event(event(), replicator())
    assert response == {"batchItemFailures": [{"itemIdentifier": "000000000000000000006"}]}


def test_skip_policy_moves_on_and_logs_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = process_event(event(), replicator(MissingTimestamp.SKIP))
    assert response == {"batchItemFailures": []}
    key = {"id": {"B": base64.b64encode(bytes.fromhex("00ff6b6579")).decode()}}
    assert any(getattr(r, "key", None) == key for r in caplog.records)
    assert any(json.dumps(key) in str(getattr(r, "reason", "")) for r in caplog.records)


def test_only_the_lowest_failure_is_reported() -> None:
    down = RecordingWriter(
        "us-east-1", fail_from="000000000000000000003", error=UnreachableError("down")
    )
    response = process_event(event(), replicator(us_east_1=down))
    assert response == {"batchItemFailures": [{"itemIdentifier": "000000000000000000003"}]}


def test_unknown_event_name_fails_only_that_record() -> None:
    bad = event()
    bad["Records"] = bad["Records"][:2]
    bad["Records"][1]["eventName"] = "UPSERT"
    writer = RecordingWriter("us-east-1")
    response = process_event(bad, replicator(us_east_1=writer))
    assert response == {"batchItemFailures": [{"itemIdentifier": "000000000000000000003"}]}
    assert [op.sequence_number for op in writer.received] == ["000000000000000000002"]


def test_keys_only_records_are_reported_not_skipped() -> None:
    keys_only = json.loads((DATA / "keys_only_event.json").read_text())
    response = process_event(keys_only, replicator())
    assert response["batchItemFailures"] == [
        {"itemIdentifier": keys_only["Records"][0]["dynamodb"]["SequenceNumber"]}
    ]


@pytest.mark.parametrize(
    "bad", [None, {}, {"Records": "x"}, {"Records": [{"eventName": "INSERT"}]}]
)
def test_malformed_event_fails_the_whole_batch(bad: Any) -> None:
    with pytest.raises(MalformedRecordError):
        process_event(bad, replicator())


def test_records_from_two_streams_are_refused() -> None:
    mixed = event()
    mixed["Records"][1] = copy.deepcopy(mixed["Records"][1])
    mixed["Records"][1]["eventSourceARN"] = "arn:aws:dynamodb:x:1:table/Other/stream/1"
    with pytest.raises(MalformedRecordError, match="one stream"):
        process_event(mixed, replicator())


def test_empty_batch_is_fine() -> None:
    assert process_event({"Records": []}, replicator()) == {"batchItemFailures": []}
