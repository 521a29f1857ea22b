"""DynamoDB evaluates the rendered condition trees exactly as the pure evaluator does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.expressions import condition_kwargs
from dynamodb_replicator.core.conditions import render
from dynamodb_replicator.core.model import AttributeValue, RegionSpec, Version
from dynamodb_replicator.core.policy import ConflictPolicy, LastWriterWins, PreferredRegion
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import create_table
from tests.unit.strategies import FIELDS, regions, stored_items, versions


@pytest.fixture(scope="module")
def client(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    client = make_client("dynamodb", RegionSpec("eu-west-1", ddb_local.endpoint_url))
    create_table(client, "Conditions", region="eu-west-1")
    yield client


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    policy=st.sampled_from([LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]),
    stored=stored_items(),
    incoming=versions(),
    holder=regions,
    strict=st.booleans(),
)
def test_server_agrees_with_pure_evaluation(
    client: Any,
    policy: ConflictPolicy,
    stored: dict[str, AttributeValue] | None,
    incoming: Version,
    holder: str,
    strict: bool,
) -> None:
    key = {"pk": {"S": "k"}}
    client.delete_item(TableName="Conditions", Key=key)
    if stored is not None:
        client.put_item(TableName="Conditions", Item=stored)
    condition = policy.stored_is_older(incoming, holder, strict=strict)
    rendered = render(condition)
    assert rendered is not None
    try:
        client.put_item(
            TableName="Conditions",
            Item={**key, "x": {"S": "written"}},
            **condition_kwargs(rendered),
        )
        accepted = True
    except client.exceptions.ConditionalCheckFailedException:
        accepted = False
    assert accepted is condition.evaluate(stored), rendered.expression
