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


def test_update_expressions_get_a_set_clause() -> None:
    with_set = stamped("UpdateItem", {"UpdateExpression": "SET a = :a REMOVE b"})
    assert with_set["UpdateExpression"].startswith("SET #replicatorTimestamp = ")
    assert with_set["UpdateExpression"].endswith(", a = :a REMOVE b")
    without = stamped("UpdateItem", {"UpdateExpression": "ADD c :one"})
    assert (
        without["UpdateExpression"] == "SET #replicatorTimestamp = :replicatorTimestamp ADD c :one"
    )
    assert without["ExpressionAttributeNames"] == {"#replicatorTimestamp": "__timestamp"}
    empty = stamped("UpdateItem", {})
    assert empty["UpdateExpression"] == "SET #replicatorTimestamp = :replicatorTimestamp"


def test_an_explicit_timestamp_is_left_alone() -> None:
    by_name = {
        "UpdateExpression": "SET #t = :t",
        "ExpressionAttributeNames": {"#t": "__timestamp"},
        "ExpressionAttributeValues": {":t": {"N": "5"}},
    }
    assert stamped("UpdateItem", dict(by_name)) == by_name
    literal = {"UpdateExpression": "SET __timestamp = :t"}
    assert stamped("UpdateItem", dict(literal)) == literal
    item = {"Item": {"pk": {"S": "k"}, "__timestamp": {"N": "5"}}}
    assert stamped("PutItem", item)["Item"]["__timestamp"] == {"N": "5"}


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
