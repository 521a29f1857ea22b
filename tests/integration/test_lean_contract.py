"""The lean transport's contract: for every call it makes, its request and its parsed answer
are boto3's (DynamoDB Local on both sides).

boto3's request is taken from botocore's own ``before-send`` event (its public hook: the
request still goes out); the lean one from the same event of nothing but its own wire: both
bodies are compared as JSON, with the operation's target header and content type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dynamodb_replicator.aws import wire
from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.aws.lean import LeanClient, make_lean_client
from dynamodb_replicator.core.errors import ConditionFailedError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import create_table

REGION = "us-east-1"
TABLE = "Contract"

# Every AttributeValue type, nested, binaries included: what a stream carries to a target.
ITEM: dict[str, Any] = {
    "pk": {"S": "k1"},
    "__timestamp": {"N": "1700000000000"},
    "n": {"N": "12345678901234567890.123456789"},
    "b": {"B": b"\x00\xffbinary"},
    "bs": {"BS": [b"a", b"\x01\x02"]},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.5"]},
    "bool": {"BOOL": True},
    "null": {"NULL": True},
    "m": {"M": {"inner": {"B": b"deep"}, "B": {"S": "an attribute named B"}}},
    "l": {"L": [{"S": "a"}, {"B": b"list"}, {"M": {"x": {"N": "1"}}}]},
}
CONDITION = {
    "ConditionExpression": "attribute_not_exists(#ts) OR #ts < :t",
    "ExpressionAttributeNames": {"#ts": "__timestamp"},
    "ExpressionAttributeValues": {":t": {"N": "1800000000000"}},
}


class Wire:
    """The ``target`` requests a botocore client sends (its ``before-send`` event) while
    the block runs."""

    def __init__(self, client: Any, target: str) -> None:
        self.client, self.target = client, target
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __enter__(self) -> Wire:
        self.client.meta.events.register("before-send", self._record)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister("before-send", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        target = request.headers["X-Amz-Target"].decode()
        if target == self.target:
            self.sent.append((target, json.loads(request.body)))


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[tuple[Any, LeanClient, Any, LeanClient]]:
    spec = RegionSpec(REGION, ddb_local.endpoint_url)
    boto = make_client("dynamodb", spec)
    create_table(boto, TABLE, region=REGION)
    lean = make_lean_client("dynamodb", spec)
    boto_streams = make_client("dynamodbstreams", spec)
    lean_streams = make_lean_client("dynamodbstreams", spec)
    assert isinstance(lean, LeanClient) and isinstance(lean_streams, LeanClient)
    yield boto, lean, boto_streams, lean_streams


def same_call(
    boto: Any, lean: LeanClient, method: str, before: Callable[[], Any], **params: Any
) -> dict[str, Any]:
    """Call ``method`` through both, each right after ``before`` (which sets the state the
    call finds); the requests and answers must be equal. The answer."""
    target = f"{lean._target}.{lean.hot[method]}"
    before()
    with Wire(boto, target) as sent:
        expected = getattr(boto, method)(**params)
    before()
    found: dict[str, Any] = getattr(lean, method)(**params)
    assert sent.sent == [(target, json.loads(wire.encode(params)))]
    for answer in (expected, found):
        answer.pop("ResponseMetadata")
        # A new iterator for every read: present in both, not equal.
        assert isinstance(answer.pop("NextShardIterator", ""), str)
    assert found == expected
    return found


def test_put_and_delete_answer_as_boto3(clients: tuple[Any, LeanClient, Any, LeanClient]) -> None:
    boto, lean, _, _ = clients
    key = {"pk": ITEM["pk"]}

    def absent() -> None:
        boto.delete_item(TableName=TABLE, Key=key)

    def present() -> None:
        boto.put_item(TableName=TABLE, Item=ITEM)

    put = dict(TableName=TABLE, Item=ITEM, ReturnValues="ALL_OLD", **CONDITION)
    assert same_call(boto, lean, "put_item", absent, **put) == {}
    assert same_call(boto, lean, "put_item", present, **put)["Attributes"]["m"] == ITEM["m"]
    measured = same_call(
        boto,
        lean,
        "put_item",
        present,
        TableName=TABLE,
        Item=ITEM,
        ReturnConsumedCapacity="TOTAL",
        ReturnItemCollectionMetrics="SIZE",
    )
    assert measured["ConsumedCapacity"]["CapacityUnits"] > 0
    delete = dict(TableName=TABLE, Key=key, ReturnValues="ALL_OLD", **CONDITION)
    assert same_call(boto, lean, "delete_item", present, **delete)["Attributes"]["b"] == ITEM["b"]


def test_batch_get_answers_as_boto3(clients: tuple[Any, LeanClient, Any, LeanClient]) -> None:
    boto, lean, _, _ = clients
    boto.put_item(TableName=TABLE, Item=ITEM)
    keys = [{"pk": ITEM["pk"]}, {"pk": {"S": "absent"}}]
    answer = same_call(
        boto,
        lean,
        "batch_get_item",
        lambda: None,
        RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}},
    )
    assert [item["l"] for item in answer["Responses"][TABLE]] == [ITEM["l"]]


def test_get_and_update_answer_as_boto3(clients: tuple[Any, LeanClient, Any, LeanClient]) -> None:
    """The state table's calls: a consistent GetItem, and a conditional UpdateItem (a
    checkpoint save, a lease renewal) with the values it returns."""
    boto, lean, _, _ = clients
    key = {"pk": ITEM["pk"]}

    def present() -> None:
        boto.put_item(TableName=TABLE, Item=ITEM)

    def absent() -> None:
        boto.delete_item(TableName=TABLE, Key=key)

    get = dict(TableName=TABLE, Key=key, ConsistentRead=True)
    assert same_call(boto, lean, "get_item", present, **get)["Item"]["m"] == ITEM["m"]
    assert same_call(boto, lean, "get_item", absent, **get) == {}
    update = dict(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #p = :p, #b = :b",
        ConditionExpression="attribute_not_exists(#ts) OR #ts < :t",
        ExpressionAttributeNames={"#p": "positions", "#b": "blob", "#ts": "__timestamp"},
        ExpressionAttributeValues={
            ":p": {"M": {"eu-west-1": {"S": "000123"}}},
            ":b": {"B": b"\x00\x01"},
            ":t": {"N": "1800000000000"},
        },
    )
    for returned in ("ALL_NEW", "UPDATED_OLD", "NONE"):
        answer = same_call(boto, lean, "update_item", present, ReturnValues=returned, **update)
        if returned == "ALL_NEW":
            assert answer["Attributes"]["blob"] == {"B": b"\x00\x01"}
    assert same_call(boto, lean, "update_item", absent, **update) == {}


def test_a_failed_update_condition_is_boto3s_error(
    clients: tuple[Any, LeanClient, Any, LeanClient],
) -> None:
    boto, lean, _, _ = clients
    boto.put_item(TableName=TABLE, Item=ITEM)
    params = dict(
        TableName=TABLE,
        Key={"pk": ITEM["pk"]},
        UpdateExpression="SET #o = :o",
        ConditionExpression="#o = :other",
        ExpressionAttributeNames={"#o": "owner"},
        ExpressionAttributeValues={":o": {"S": "me"}, ":other": {"S": "someone else"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    errors = []
    for client in (boto, lean):
        with pytest.raises(ClientError) as raised:
            client.update_item(**params)
        errors.append(raised.value)
    expected, found = (dict(e.response) for e in errors)
    assert found["Error"] == expected["Error"]
    assert found["Item"] == expected["Item"] and found["Item"]["b"]["B"] == ITEM["b"]["B"]
    assert str(errors[1]) == str(errors[0])
    translated = translate(errors[1], REGION, "UpdateItem")
    assert isinstance(translated, ConditionFailedError) and translated.item == expected["Item"]


def test_a_failed_condition_is_boto3s_error(
    clients: tuple[Any, LeanClient, Any, LeanClient],
) -> None:
    boto, lean, _, _ = clients
    boto.put_item(TableName=TABLE, Item=ITEM)
    stale = {**CONDITION, "ExpressionAttributeValues": {":t": {"N": "1"}}}
    params = dict(TableName=TABLE, Item=ITEM, ReturnValuesOnConditionCheckFailure="ALL_OLD")
    errors = []
    for client in (boto, lean):
        with pytest.raises(ClientError) as raised:
            client.put_item(**params, **stale)
        errors.append(raised.value)
    expected, found = (dict(e.response) for e in errors)
    assert found["Error"] == expected["Error"]
    assert found["Item"] == expected["Item"] and found["Item"]["bs"]["BS"]
    assert str(errors[1]) == str(errors[0])
    translated = translate(errors[1], REGION, "PutItem")
    assert isinstance(translated, ConditionFailedError) and translated.item == expected["Item"]


def test_get_records_answers_as_boto3(clients: tuple[Any, LeanClient, Any, LeanClient]) -> None:
    boto, _, boto_streams, lean_streams = clients
    boto.put_item(TableName=TABLE, Item=ITEM)
    arn = boto.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = boto_streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = boto_streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    # Both read the same page: an iterator can be used more than once.
    answer = same_call(
        boto_streams, lean_streams, "get_records", lambda: None, ShardIterator=iterator
    )
    images = [r["dynamodb"].get("NewImage", {}) for r in answer["Records"]]
    assert ITEM["m"] in [image.get("m") for image in images]
    created = answer["Records"][0]["dynamodb"]["ApproximateCreationDateTime"]
    assert created.tzinfo is not None


def test_other_calls_go_to_botocore(clients: tuple[Any, LeanClient, Any, LeanClient]) -> None:
    boto, lean, _, _ = clients
    assert lean.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE
    assert lean.meta is lean.client.meta and "describe_table" not in lean.hot
    assert boto.meta.region_name == lean.meta.region_name
