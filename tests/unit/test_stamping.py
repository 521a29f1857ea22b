"""The stamper's request rewriting, on request dictionaries as botocore builds them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dynamodb_replicator.stamping import Stamper


class Model:
    def __init__(self, name: str) -> None:
        self.name = name


class Clock:
    def now(self) -> float:
        return 1.0


def stamped(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    Stamper(Clock())(params, Model(operation))
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
    item = {"Item": {"pk": {"S": "k"}, "__timestamp": {"N": "5"}, "__replicaTimestamp": {"N": "5"}}}
    assert stamped("PutItem", item)["Item"] == {"pk": {"S": "k"}, "__timestamp": {"N": "5"}}


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
