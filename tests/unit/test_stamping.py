"""The stamper's request rewriting, on request dictionaries as botocore builds them."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest

from dynamodb_replicator.aws.factory import dynamo_store
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.stamping import Stamper, stamp
from dynamodb_replicator.testing.clock import ManualClock


class Model:
    def __init__(self, name: str) -> None:
        self.name = name


def stamped(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    Stamper(ManualClock(1.0))(params, Model(operation))
    return params


STAMP = "#replicatorTimestamp = :replicatorTimestamp"
NAMES = {"#replicatorTimestamp": "__timestamp", "#replicatorMarker": "__replicaTimestamp"}


def test_update_expressions_get_a_set_clause_and_drop_the_marker() -> None:
    with_set = stamped("UpdateItem", {"UpdateExpression": "SET a = :a REMOVE b"})
    assert with_set["UpdateExpression"] == f"SET {STAMP}, a = :a REMOVE #replicatorMarker, b"
    without = stamped("UpdateItem", {"UpdateExpression": "ADD c :one"})
    assert without["UpdateExpression"] == f"SET {STAMP} ADD c :one REMOVE #replicatorMarker"
    assert without["ExpressionAttributeNames"] == NAMES
    empty = stamped("UpdateItem", {})
    assert empty["UpdateExpression"] == f"SET {STAMP} REMOVE #replicatorMarker"
    # A placeholder named like the keyword is no REMOVE clause.
    placeholder = stamped("UpdateItem", {"UpdateExpression": "SET #remove = :remove"})
    assert placeholder["UpdateExpression"].endswith("#remove = :remove REMOVE #replicatorMarker")


def test_an_explicit_timestamp_is_left_alone_and_the_marker_still_dropped() -> None:
    """An application that stamps its own writes may land exactly on a replica's
    timestamp: its update must not keep the replica's marker (docs/concepts/guarantees.md)."""
    by_name = {
        "UpdateExpression": "SET #t = :t",
        "ExpressionAttributeNames": {"#t": "__timestamp"},
        "ExpressionAttributeValues": {":t": {"N": "5"}},
    }
    assert stamped("UpdateItem", dict(by_name)) == {
        **by_name,
        "UpdateExpression": "SET #t = :t REMOVE #replicatorMarker",
        "ExpressionAttributeNames": {
            "#t": "__timestamp",
            "#replicatorMarker": "__replicaTimestamp",
        },
    }
    literal = {"UpdateExpression": "SET __timestamp = :t"}
    assert stamped("UpdateItem", dict(literal))["UpdateExpression"] == (
        "SET __timestamp = :t REMOVE #replicatorMarker"
    )
    # A replica read back (marker 5) whose timestamp the application set anew: its choice.
    item = {"Item": {"pk": {"S": "k"}, "__timestamp": {"N": "6"}, "__replicaTimestamp": {"N": "5"}}}
    assert stamped("PutItem", item)["Item"] == {"pk": {"S": "k"}, "__timestamp": {"N": "6"}}


def test_a_put_of_a_replica_read_back_gets_a_fresh_timestamp() -> None:
    """Its ``__timestamp`` equals its marker: the replica's, not one the application chose
    (else the put would read as that timestamp written in this region)."""
    item = {"pk": {"S": "k"}, "__timestamp": {"N": "5"}, "__replicaTimestamp": {"N": "5.0"}}
    put = stamped("PutItem", {"Item": item})["Item"]
    assert set(put) == {"pk", "__timestamp"}
    assert int(put["__timestamp"]["N"]) >= 1000  # the clock's, not the replica's 5


def test_an_update_that_only_reads_the_timestamp_or_the_marker_is_stamped_and_unmarked() -> None:
    """Only the paths an update writes are its own; reading one (or a condition naming
    it) leaves the stamper's SET and REMOVE valid."""
    names = {"#ts": "__timestamp", "#m": "__replicaTimestamp"}
    params = stamped(
        "UpdateItem",
        {"UpdateExpression": "SET prev = #ts, copy = #m", "ExpressionAttributeNames": names},
    )
    assert params["UpdateExpression"] == (
        f"SET {STAMP}, prev = #ts, copy = #m REMOVE #replicatorMarker"
    )


def test_the_callers_dicts_are_left_unchanged() -> None:
    """botocore hands a low-level client's nested dicts to the handler uncopied."""
    item = {"pk": {"S": "k"}}
    values = {":v": {"S": "x"}}
    updates: dict[str, Any] = {}
    batch = {"T": [{"PutRequest": {"Item": item}}]}
    transact = [{"Update": {"UpdateExpression": "SET v = :v", "ExpressionAttributeValues": values}}]
    stamped("PutItem", {"Item": item})
    stamped("UpdateItem", {"UpdateExpression": "SET v = :v", "ExpressionAttributeValues": values})
    stamped("UpdateItem", {"AttributeUpdates": updates})
    assert (
        "__timestamp"
        in stamped("BatchWriteItem", {"RequestItems": batch})["RequestItems"]["T"][0]["PutRequest"][
            "Item"
        ]
    )
    stamped("TransactWriteItems", {"TransactItems": transact})
    assert (item, values, updates) == ({"pk": {"S": "k"}}, {":v": {"S": "x"}}, {})
    assert batch == {"T": [{"PutRequest": {"Item": {"pk": {"S": "k"}}}}]}
    assert transact[0]["Update"] == {
        "UpdateExpression": "SET v = :v",
        "ExpressionAttributeValues": {":v": {"S": "x"}},
    }


def test_a_request_that_names_the_marker_itself_is_left_to_it() -> None:
    """A path may appear in one clause only: the stamper adds none for the marker."""
    named = {
        "UpdateExpression": "SET #m = :m",
        "ExpressionAttributeNames": {"#m": "__replicaTimestamp"},
    }
    assert "REMOVE" not in stamped("UpdateItem", named)["UpdateExpression"]
    legacy = stamped("UpdateItem", {"AttributeUpdates": {}})
    assert legacy["AttributeUpdates"]["__replicaTimestamp"] == {"Action": "DELETE"}


def test_legacy_attribute_updates_and_batches_are_stamped() -> None:
    legacy = stamped("UpdateItem", {"AttributeUpdates": {}})
    assert legacy["AttributeUpdates"]["__timestamp"]["Action"] == "PUT"
    batch = stamped(
        "BatchWriteItem",
        {"RequestItems": {"T": [{"PutRequest": {"Item": {}}}, {"DeleteRequest": {"Key": {}}}]}},
    )
    assert "__timestamp" in batch["RequestItems"]["T"][0]["PutRequest"]["Item"]
    assert "Item" not in batch["RequestItems"]["T"][1]["DeleteRequest"]


def test_partiql_writes_are_warned(caplog: pytest.LogCaptureFixture) -> None:
    params = {"Statement": "UPDATE T SET a = 1"}
    logger = logging.getLogger("dynamodb_replicator.stamping")
    logger.addHandler(caplog.handler)  # whatever another test did to propagation
    try:
        with caplog.at_level(logging.WARNING, logger="dynamodb_replicator.stamping"):
            stamped("ExecuteStatement", params)
    finally:
        logger.removeHandler(caplog.handler)
    assert params == {"Statement": "UPDATE T SET a = 1"}
    assert "PartiQL" in caplog.text


def test_a_client_is_never_both_stamped_and_the_replicators() -> None:
    """The replicator's puts carry the marker that ``stamp()`` strips."""
    spec = RegionSpec("us-east-1", "http://127.0.0.1:1")

    def client() -> Any:
        return boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )

    stamped_first = client()
    stamp(stamped_first)
    with pytest.raises(ConfigError, match="stamped client"):
        dynamo_store(spec, client=stamped_first)
    store_first = client()
    dynamo_store(spec, client=store_first)
    with pytest.raises(ConfigError, match="replicator's own items"):
        stamp(store_first)
