"""Rendered conditions become boto3 arguments in the adapter."""

from __future__ import annotations

from dynamodb_replicator.aws.expressions import condition_kwargs
from dynamodb_replicator.core.conditions import Compare, Exists, Path, Value, render


def test_condition_kwargs_carry_the_expression_and_its_placeholders() -> None:
    rendered = render(Compare(Path("n"), "<", Value({"N": "5"})))
    assert rendered is not None
    kwargs = condition_kwargs(rendered)
    assert kwargs["ConditionExpression"] == rendered.expression
    assert kwargs["ExpressionAttributeNames"] == dict(rendered.names)
    assert list(kwargs["ExpressionAttributeValues"].values()) == [{"N": "5"}]


def test_no_values_means_no_expression_attribute_values() -> None:
    rendered = render(Exists(Path("pk")))
    assert rendered is not None
    assert set(condition_kwargs(rendered)) == {"ConditionExpression", "ExpressionAttributeNames"}
