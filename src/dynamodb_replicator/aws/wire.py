"""The JSON wire form of DynamoDB's and DynamoDB Streams' hot calls, in boto3's shapes.

boto3's low-level clients hand out AttributeValues as they are on the wire except for two
things, and this module does both, so that what the lean transport (``aws.lean``) returns
is equal to what boto3 returns (``tests/integration/test_lean_contract.py``):

* Binary (``B``, ``BS``) travels as base64 text and is bytes in Python, both ways;
* a stream record's ``ApproximateCreationDateTime`` is epoch seconds on the wire and an
  aware ``datetime`` in Python.

Decoding a page walks its items only when the raw answer names a Binary type at all, so a
page without binaries costs one ``orjson.loads``. Without orjson (the Lambda zip carries no
native wheels) the standard library's ``json`` does the same work, slower. Error answers
become botocore's ``ClientError`` with the response dict botocore would build, so they go
through the one error table (``aws.errors``) unchanged.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

try:
    import orjson
except ImportError:  # the Lambda zip: no native wheels
    orjson = None  # type: ignore[assignment]

__all__ = ["client_error", "decode", "encode"]

# A Binary type tag anywhere in a raw answer; a string value cannot hold an unescaped quote,
# so this finds only keys (an attribute named "B" triggers a walk that finds nothing).
_MAY_HOLD_BINARY = re.compile(rb'"BS?"\s*:')

Walk = Callable[[Any], Any]


def _default(value: Any) -> Any:
    """What orjson cannot write itself: bytes as base64 text, sets as lists (boto3's)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} to DynamoDB")


Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


def json_codec(*, fast: bool = True) -> Codec:
    """(dumps, loads): orjson's where it is installed and ``fast``, else the standard
    library's (compact, the same JSON text up to key spacing and escapes). Both raise
    ``ValueError`` (orjson's decode error is one) on a body that is no JSON."""
    if fast and orjson is not None:
        return lambda params: orjson.dumps(params, default=_default), orjson.loads

    def dumps(params: Any) -> bytes:
        return json.dumps(params, default=_default, separators=(",", ":")).encode()

    return dumps, json.loads


_dumps, _loads = json_codec()


def encode(params: Mapping[str, Any]) -> bytes:
    """A request's parameters (boto3's keyword arguments) as the JSON body."""
    return _dumps(params)


def _value(value: dict[str, Any]) -> dict[str, Any]:
    """One AttributeValue with its binaries decoded (nested maps and lists included)."""
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "BS" in value:
        return {"BS": [base64.b64decode(v) for v in value["BS"]]}
    if "M" in value:
        return {"M": _item(value["M"])}
    if "L" in value:
        return {"L": [_value(v) for v in value["L"]]}
    return value


def _item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in item.items()}


def _items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_item(item) for item in items]


def _fields(**walks: Walk) -> Walk:
    """A walk of a structure: ``walks`` for the named fields, the rest as it is."""

    def walk(found: Any) -> Any:
        return {k: walks[k](v) if k in walks else v for k, v in found.items()}

    return walk


def _each(walk: Walk) -> Walk:
    return lambda found: {k: walk(v) for k, v in found.items()}


def _listed(walk: Walk) -> Walk:
    return lambda found: [walk(v) for v in found]


_collection_metrics = _fields(ItemCollectionKey=_item)
_record = _fields(dynamodb=_fields(Keys=_item, NewImage=_item, OldImage=_item))

# Per operation: where its answer (or its error answer) holds AttributeValues.
_BINARY_WALKS: Mapping[str, Walk] = {
    "PutItem": _fields(Attributes=_item, ItemCollectionMetrics=_collection_metrics),
    "DeleteItem": _fields(Attributes=_item, ItemCollectionMetrics=_collection_metrics),
    "UpdateItem": _fields(Attributes=_item, ItemCollectionMetrics=_collection_metrics),
    "GetItem": _fields(Item=_item),
    "BatchGetItem": _fields(Responses=_each(_items), UnprocessedKeys=_each(_fields(Keys=_items))),
    "GetRecords": _fields(Records=_listed(_record)),
    "error": _fields(Item=_item),
}


def _created(record: dict[str, Any]) -> None:
    body = record.get("dynamodb")
    if body is not None and "ApproximateCreationDateTime" in body:
        # botocore's parser gives the local zone; aware datetimes compare by instant.
        body["ApproximateCreationDateTime"] = datetime.datetime.fromtimestamp(
            float(body["ApproximateCreationDateTime"]), datetime.UTC
        )


def decode(operation: str, raw: bytes) -> dict[str, Any]:
    """A successful answer of ``operation`` in boto3's shape (no ResponseMetadata)."""
    found: dict[str, Any] = _loads(raw) if raw else {}
    if _MAY_HOLD_BINARY.search(raw):
        found = _BINARY_WALKS[operation](found)
    if operation == "GetRecords":
        for record in found.get("Records", ()):
            _created(record)
    return found


def _error_body(raw: bytes) -> dict[str, Any]:
    try:
        found = _loads(raw) if raw else {}
    except ValueError:
        return {"message": raw.decode("utf-8", "replace")}
    return found if isinstance(found, dict) else {}


def client_error(
    operation: str, status: int, raw: bytes, headers: Mapping[str, str]
) -> ClientError:
    """botocore's ClientError for an error answer: code from ``__type`` (else the HTTP
    status, as botocore does), message, the error's own fields (such as the ALL_OLD
    ``Item`` of a failed condition) and the response metadata."""
    body = _error_body(raw)
    code = str(body.get("__type") or status).rsplit("#", 1)[-1]
    message = body.get("message", body.get("Message", ""))
    fields = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
    if _MAY_HOLD_BINARY.search(raw):
        fields = _BINARY_WALKS["error"](fields)
    # One attempt is all botocore makes for our clients too: its message says so.
    response: dict[str, Any] = {
        "Error": {"Message": message, "Code": code},
        "ResponseMetadata": {**metadata(status, headers), "MaxAttemptsReached": True},
        **fields,
    }
    return ClientError(response, operation)


def metadata(status: int, headers: Mapping[str, str]) -> dict[str, Any]:
    """botocore's ResponseMetadata for an answer (no retries: ours are outside)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    return {
        "RequestId": lowered.get("x-amzn-requestid", ""),
        "HTTPStatusCode": status,
        "HTTPHeaders": lowered,
        "RetryAttempts": 0,
    }
