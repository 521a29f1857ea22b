"""Decoding recorded DynamoDB Local events (tests/data) into Changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.core.codec import (
    attribute_from_json,
    attribute_to_json,
    decode_record,
    table_name_from_arn,
)
from dynamodb_replicator.core.errors import (
    MalformedRecordError,
    MissingTimestampError,
    StreamViewTypeError,
)
from dynamodb_replicator.core.model import Operation, Version, pad_sequence
from dynamodb_replicator.core.policy import LATEST

from .strategies import FIELDS

DATA = Path(__file__).parent.parent / "data"


def golden() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((DATA / "golden_event.json").read_text())["Records"]
    return records


def decode(record: dict[str, Any]) -> Any:
    return decode_record(record, source_region="eu-west-1", fields=FIELDS, from_json=True)


def test_insert_keeps_binary_and_38_digit_numbers_exactly() -> None:
    change = decode(golden()[0])
    assert change.operation is Operation.PUT
    assert change.key.to_attributes() == {"id": {"B": b"\x00\xffkey"}}
    assert change.image["big"] == {"N": "12345678901234567890123456789012345678"}
    assert sorted(change.image["blobs"]["BS"]) == [b"\x01\x02", b"\xfe"]
    # An application write is its region's version at its place in the stream.
    seq = pad_sequence(change.sequence_number)
    assert change.version == Version.of("1700000000000", "eu-west-1", seq)
    assert change.old_version is None and not change.echo


def test_modify_carries_the_replaced_version() -> None:
    change = decode(golden()[1])
    seq = pad_sequence(change.sequence_number)
    assert change.version == Version.of("1700000000001", "eu-west-1", seq)
    # Own content in the OldImage was written before the record: no seq, the lowest.
    assert change.old_version == Version.of("1700000000000", "eu-west-1")


def test_replica_write_is_an_echo_with_its_origin() -> None:
    change = decode(golden()[2])
    assert change.echo
    assert change.version == Version.of("1700000000002", "us-east-1")


def test_remove_carries_the_deleted_version() -> None:
    change = decode(golden()[3])
    assert change.operation is Operation.DELETE
    # A delete of another region's version removes every content of its timestamp there.
    assert change.version == Version.of("1700000000002", "us-east-1", LATEST)


def test_missing_timestamp_names_the_key() -> None:
    with pytest.raises(MissingTimestampError, match="id=B:00ff6b6579"):
        decode(golden()[4])


def test_keys_only_stream_is_refused_with_the_fix() -> None:
    record = json.loads((DATA / "keys_only_event.json").read_text())["Records"][0]
    with pytest.raises(StreamViewTypeError, match="NEW_AND_OLD_IMAGES"):
        decode(record)


def test_modify_without_old_image_is_refused() -> None:
    record = copy.deepcopy(golden()[1])
    del record["dynamodb"]["OldImage"]
    del record["dynamodb"]["StreamViewType"]
    with pytest.raises(StreamViewTypeError):
        decode(record)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(eventName="UPSERT"),
        lambda r: r["dynamodb"].pop("Keys"),
        lambda r: r["dynamodb"].update(NewImage=[1, 2]),
        lambda r: r["dynamodb"]["NewImage"].update(x={"Q": "1"}),
        lambda r: r["dynamodb"]["NewImage"].update(x={"B": "not base64!"}),
    ],
    ids=["unknown-event", "no-keys", "image-not-map", "unknown-type", "bad-base64"],
)
def test_malformed_records_are_refused(mutate: Any) -> None:
    record = copy.deepcopy(golden()[0])
    mutate(record)
    with pytest.raises(MalformedRecordError):
        decode(record)


def test_json_round_trip_of_attribute_values() -> None:
    for name, value in golden()[0]["dynamodb"]["NewImage"].items():
        assert attribute_to_json(attribute_from_json(value)) == value, name


def test_table_name_from_stream_arn() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2026-01-01T00:00:00.000"
    assert table_name_from_arn(arn) == "Orders"
    with pytest.raises(MalformedRecordError):
        table_name_from_arn("arn:aws:s3:::bucket")


def test_typeless_empty_map_from_dynamodb_local_is_an_empty_map() -> None:
    record = copy.deepcopy(golden()[0])
    record["dynamodb"]["NewImage"]["empty"] = {}
    record["dynamodb"]["NewImage"]["nested"] = {"L": [{"M": {"inner": {}}}]}
    change = decode(record)
    assert change.image is not None
    assert change.image["empty"] == {"M": {}}
    assert change.image["nested"] == {"L": [{"M": {"inner": {"M": {}}}}]}
    boto3_form = decode_record(
        {
            **record,
            "dynamodb": {
                **record["dynamodb"],
                "NewImage": {**change.image, "empty": {}, "nested": {"L": [{"M": {"inner": {}}}]}},
            },
        },
        source_region="eu-west-1",
        fields=FIELDS,
        from_json=False,
    )
    assert boto3_form.image is not None
    assert boto3_form.image["nested"] == {"L": [{"M": {"inner": {"M": {}}}}]}


def test_remove_of_an_unversioned_item_is_a_delete_without_version() -> None:
    """Deleting a legacy item (no ``__timestamp``, e.g. expired by TTL) is no failed record:
    it is a delete that carries no version."""
    record = copy.deepcopy(golden()[3])
    old = record["dynamodb"]["OldImage"]
    for name in (FIELDS.timestamp, FIELDS.origin, FIELDS.marker):
        old.pop(name, None)
    change = decode(record)
    assert change.operation is Operation.DELETE and change.version is None
