"""Stream records <-> Changes. Pure: no network, no clock.

Two input shapes are accepted: the boto3 ``GetRecords`` form (Binary as bytes) and the
Lambda event form (JSON, Binary as base64 text). Both become the same raw AttributeValue
maps; Numbers stay strings throughout.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from dynamodb_replicator.core.errors import (
    MalformedRecordError,
    MissingTimestampError,
    StreamViewTypeError,
)
from dynamodb_replicator.core.model import (
    AttributeValue,
    Change,
    Item,
    ItemKey,
    Operation,
    SystemAttributes,
    Version,
    pad_sequence,
)
from dynamodb_replicator.core.policy import (
    LATEST,
    as_local,
    is_genuine,
    is_marked,
    is_replica_write,
    stored_version,
)

__all__ = [
    "attribute_from_json",
    "attribute_to_json",
    "decode_record",
    "item_to_json",
    "key_from_json",
    "key_object",
    "key_to_json",
    "record_key",
    "record_to_lambda_event_record",
    "sequence_number_of",
    "table_name_from_arn",
]

_OPERATIONS = {"INSERT": Operation.PUT, "MODIFY": Operation.PUT, "REMOVE": Operation.DELETE}
_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}


def _typeless_map(value: Any) -> bool:
    # DynamoDB Local's streams write an empty map as {} (its GetItem says {"M": {}}). No
    # other AttributeValue can come out empty, so {} can only be an empty map.
    # ``not value`` first: almost every value is a non-empty map, and the Mapping check
    # (an ABC's) costs a Python-level call per attribute of every record.
    return not value and isinstance(value, Mapping)


def _repaired(value: AttributeValue) -> AttributeValue:
    """A boto3-form AttributeValue with any typeless empty map restored, at any depth."""
    if _typeless_map(value):
        return {"M": {}}
    ((kind, raw),) = value.items()
    if kind == "M":
        return {"M": {k: _repaired(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_repaired(v) for v in raw]}
    return value


def attribute_from_json(value: Any) -> AttributeValue:
    """Lambda/JSON AttributeValue -> boto3 form (base64 Binary decoded to bytes)."""
    if _typeless_map(value):
        return {"M": {}}
    if not isinstance(value, Mapping) or len(value) != 1:
        raise MalformedRecordError(f"not an AttributeValue: {type(value).__name__}")
    ((kind, raw),) = value.items()
    if kind not in _TYPES:
        raise MalformedRecordError(f"unknown AttributeValue type {kind!r}")
    try:
        if kind == "B":
            return {"B": base64.b64decode(raw, validate=True)}
        if kind == "BS":
            return {"BS": [base64.b64decode(v, validate=True) for v in raw]}
    except (binascii.Error, TypeError) as exc:
        raise MalformedRecordError(f"bad base64 in a {kind} attribute") from exc
    if kind == "M":
        return {"M": {k: attribute_from_json(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [attribute_from_json(v) for v in raw]}
    return {kind: raw}


def attribute_to_json(value: AttributeValue) -> Any:
    """boto3 AttributeValue -> Lambda/JSON form (bytes as base64 text)."""
    if _typeless_map(value):
        return {"M": {}}
    ((kind, raw),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(raw).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode("ascii") for v in raw]}
    if kind == "M":
        return {"M": {k: attribute_to_json(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [attribute_to_json(v) for v in raw]}
    return {kind: raw}


def item_to_json(item: Item) -> dict[str, Any]:
    """boto3 item (or key) -> Lambda/JSON form, attribute by attribute."""
    return {name: attribute_to_json(value) for name, value in item.items()}


def key_to_json(item: Item, names: Iterable[str] | None = None) -> str:
    """The one JSON text of a key: the item's ``names`` attributes (all when None), in the
    Lambda/JSON form, names sorted, so one key always gives one text (diff rows, resume
    points, repair input)."""
    key = item if names is None else {name: item[name] for name in names}
    return json.dumps(item_to_json(key), sort_keys=True)


def key_object(item: Item, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The key as a JSON object (JSON output and logs): ``key_to_json``'s text, decoded,
    so that printed it is that very text."""
    decoded: dict[str, Any] = json.loads(key_to_json(item, names))
    return decoded


def record_key(record: Mapping[str, Any], *, from_json: bool) -> dict[str, Any] | None:
    """A stream record's key as ``key_object`` gives it (None: the record has no readable
    key), for log lines about records that cannot be decoded."""
    try:
        keys = dict(record["dynamodb"]["Keys"])
        if from_json:
            keys = {name: attribute_from_json(value) for name, value in keys.items()}
        return key_object(keys)
    except (KeyError, TypeError, ValueError, AttributeError, MalformedRecordError):
        return None


def key_from_json(text: str) -> dict[str, AttributeValue]:
    """``key_to_json``'s text -> boto3 key."""
    decoded = json.loads(text)
    if not isinstance(decoded, Mapping):
        raise MalformedRecordError(f"not a JSON key: {text!r}")
    return {name: attribute_from_json(value) for name, value in decoded.items()}


def _image(raw: Any, *, from_json: bool, what: str) -> Item | None:
    if raw is None:
        return None
    if not isinstance(raw, (dict, Mapping)):
        raise MalformedRecordError(f"{what} is not a map")
    if from_json:
        return {name: attribute_from_json(v) for name, v in raw.items()}
    # Almost every attribute is a plain dict of one scalar type: kept as it is, no call.
    # The rest (maps, lists, a typeless empty map, anything malformed) go to ``_repaired``.
    image = dict(raw)
    for name, value in raw.items():
        if value.__class__ is not dict or len(value) != 1 or "M" in value or "L" in value:
            image[name] = _repaired(value)
    return image


def sequence_number_of(record: Any) -> str:
    """The record's SequenceNumber; without it a record cannot even be reported as failed."""
    # ``dict`` first (an exact type match, in C): a Mapping check alone is a Python-level
    # ABC call, and this runs three times per record.
    if isinstance(record, (dict, Mapping)):
        body = record.get("dynamodb")
        if isinstance(body, (dict, Mapping)):
            sequence = body.get("SequenceNumber")
            if isinstance(sequence, str) and sequence.isdigit():
                return sequence
    raise MalformedRecordError("record has no dynamodb.SequenceNumber")


def table_name_from_arn(arn: str) -> str:
    """``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`` -> ``NAME``."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("table/"):
        raise MalformedRecordError(f"not a DynamoDB table or stream ARN: {arn!r}")
    return parts[5].split("/")[1]


def _version(
    image: Item, key: ItemKey, region: str, fields: SystemAttributes, sequence: str
) -> Version:
    """The version a record's image carries: replica content keeps its labels; content an
    application wrote here is a version of ``region`` at this record's place in its stream."""
    version = stored_version(image, region, fields, own_seq=pad_sequence(sequence))
    if version is None:
        raise MissingTimestampError(
            f"item of key {key} has no usable Number attribute {fields.timestamp}"
        )
    return version


def _truthful(image: Item | None, fields: SystemAttributes) -> Item | None:
    """An OldImage with the labels it deserves: an application's update of replica content
    that kept (or hit) the marker is content of this region (``is_genuine``)."""
    if image is None or not is_marked(image, fields) or is_genuine(image, fields):
        return image
    return as_local(image, fields)


def _deleted_version(removed: Version | None, region: str, own: str) -> Version | None:
    """The version a delete in ``region`` carries, from the labels of the content it
    removed; ``own``: the delete record's place in the stream (padded)."""
    if removed is None:
        return None
    if removed.origin != region:
        # A delete of another region's version removes every content of its timestamp
        # and origin: this region cannot tell which of them it deleted.
        return Version.of(removed.raw_timestamp, removed.origin, LATEST)
    # A delete of this region's own version, whatever copy of it was there (own content,
    # a restore labelled with an earlier record, a copy of the earlier scheme without a
    # seq), is this region's write at this record: it removes every content of that
    # timestamp written here up to it (a copy labelled with a later record than the one
    # removed may still be on its way here), not later ones. Never a seq of "": that
    # would read back as the earlier scheme's delete of every content (core.tombstones).
    return Version.of(removed.raw_timestamp, region, own)


def decode_record(
    record: Mapping[str, Any],
    *,
    source_region: str,
    fields: SystemAttributes,
    from_json: bool,
) -> Change:
    """Decode one stream record of ``source_region``'s table into a Change.

    Raises a RecordError subclass when the record cannot be replicated as it is.
    """
    sequence = sequence_number_of(record)
    name = record.get("eventName")
    if name not in _OPERATIONS:
        raise MalformedRecordError(f"record {sequence}: unknown eventName {name!r}")
    body = record["dynamodb"]
    view = body.get("StreamViewType", "NEW_AND_OLD_IMAGES")
    if view != "NEW_AND_OLD_IMAGES":
        raise StreamViewTypeError(
            f"record {sequence}: stream view type is {view}; replication needs "
            "NEW_AND_OLD_IMAGES (update the table's StreamSpecification)"
        )
    keys = _image(body.get("Keys"), from_json=from_json, what="Keys")
    if not keys:
        raise MalformedRecordError(f"record {sequence}: no Keys")
    key = ItemKey.from_attributes(keys)
    new = _image(body.get("NewImage"), from_json=from_json, what="NewImage")
    old = _image(body.get("OldImage"), from_json=from_json, what="OldImage")
    operation = _OPERATIONS[name]
    # The images each event needs (no table of tuples built per record).
    if (old if name == "REMOVE" else new) is None or (name == "MODIFY" and old is None):
        raise StreamViewTypeError(
            f"record {sequence}: {name} without the images it needs; the stream must be "
            "NEW_AND_OLD_IMAGES"
        )
    if operation is Operation.DELETE:
        assert old is not None
        # An unversioned item's delete has no version (None): it removes only unversioned
        # items elsewhere (see core.plan).
        # Own content deleted here is the version up to this record in the stream: the
        # delete removes it and every earlier write of that timestamp here, not later ones.
        own = pad_sequence(sequence)
        removed = stored_version(_truthful(old, fields), source_region, fields, own_seq=own)
        deleted = _deleted_version(removed, source_region, own)
        # ``old_version``: the labels of the content removed, so that the replicator's own
        # removal (covered by a remembered delete) is known for an echo (core.plan).
        return Change(operation, key, sequence, deleted, old_image=old, old_version=removed)
    assert new is not None
    echo = is_replica_write(new, old, fields)
    if echo:
        version = _version(new, key, source_region, fields, sequence)
    else:
        # An application write is a version of this region, whatever labels it kept.
        version = _version(as_local(new, fields), key, source_region, fields, sequence)
    return Change(
        operation,
        key,
        sequence,
        version,
        image=new,
        old_image=old,
        # Own content in OldImage was written before this record: seq "" orders it so.
        old_version=stored_version(_truthful(old, fields), source_region, fields),
        echo=echo,
    )


def record_to_lambda_event_record(
    record: Mapping[str, Any], *, event_source_arn: str, aws_region: str
) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda delivers it (for tests, demo, replay tools)."""
    body = dict(record["dynamodb"])
    created = body.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        body["ApproximateCreationDateTime"] = created.timestamp()
    for image in ("Keys", "NewImage", "OldImage"):
        if image in body:
            body[image] = item_to_json(body[image])
    event = {k: v for k, v in record.items() if k != "dynamodb"}
    event.update(dynamodb=body, eventSourceARN=event_source_arn, awsRegion=aws_region)
    return event
