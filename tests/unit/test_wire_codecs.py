"""The lean transport's JSON: orjson where installed, the standard library's json where
not (the Lambda zip); both give DynamoDB the same request and boto3's shapes back."""

from __future__ import annotations

import json

import pytest

from dynamodb_replicator.aws import wire

PARAMS = {
    "TableName": "Orders",
    "Item": {
        "pk": {"S": 'é\u2028"quoted"'},
        "blob": {"B": b"\x00\xff"},
        "blobs": {"BS": [b"a", b"b"]},
        "n": {"N": "1.50"},
        "m": {"M": {"l": {"L": [{"BOOL": True}, {"NULL": True}]}}},
    },
    "ConditionExpression": "attribute_not_exists(#k)",
    "Limit": 25,
}


def test_the_standard_library_codec_sends_what_orjson_sends() -> None:
    fast, _ = wire.json_codec()
    plain, _ = wire.json_codec(fast=False)
    assert json.loads(plain(PARAMS)) == json.loads(fast(PARAMS))
    assert plain({"s": {"SS": {"x"}}}) == b'{"s":{"SS":["x"]}}'


def test_the_standard_library_codec_reads_what_orjson_reads() -> None:
    body = (
        b'{"Item":{"pk":{"S":"\\u00e9"},"n":{"N":"10"}},"ConsumedCapacity":{"CapacityUnits":1.0}}'
    )
    _, fast = wire.json_codec()
    _, plain = wire.json_codec(fast=False)
    assert plain(body) == fast(body)
    for loads in (fast, plain):
        with pytest.raises(ValueError):
            loads(b"<html>busy</html>")
