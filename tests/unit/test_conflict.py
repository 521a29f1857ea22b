"""The condition trees and the pure order describe the same rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dynamodb_replicator.core.conditions import Bound, render
from dynamodb_replicator.core.model import AttributeValue, Version
from dynamodb_replicator.core.policy import (
    LATEST,
    ConflictPolicy,
    LastWriterWins,
    PreferredRegion,
    newer,
    stored_version,
    would_apply,
)

from .strategies import (
    FIELDS,
    REGIONS,
    local_item,
    numbers,
    regions,
    replica_item,
    spellings,
    stored_items,
    versions,
)

POLICIES: list[ConflictPolicy] = [LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]


@given(st.sampled_from(POLICIES), stored_items(), versions(), regions, st.booleans())
def test_condition_agrees_with_pure_order(
    policy: ConflictPolicy,
    item: dict[str, AttributeValue] | None,
    incoming: Version,
    holder: str,
    strict: bool,
) -> None:
    condition = policy.stored_is_older(incoming, holder, strict=strict)
    stored = stored_version(item, holder, FIELDS, own_seq=LATEST)
    expected = would_apply(policy, incoming, stored, strict=strict)
    assert condition.evaluate(item) is expected
    assert render(condition) is not None  # never a constant: always a real condition


@given(versions(), regions, st.booleans())
def test_a_bound_condition_renders_what_its_tree_renders(
    incoming: Version, holder: str, strict: bool
) -> None:
    """Last-writer-wins' condition is a template rendered once and bound per write: on the
    wire it must be the tree with the write's values in place, text, names and values in
    the same order."""
    condition = LastWriterWins(FIELDS).stored_is_older(incoming, holder, strict=strict)
    assert isinstance(condition, Bound)
    bound, tree = render(condition), render(condition.tree())
    assert bound is not None and tree is not None
    assert bound.expression == tree.expression
    assert list(bound.names.items()) == list(tree.names.items())
    assert list(bound.values.items()) == list(tree.values.items())
    assert {"N": incoming.raw_timestamp} in bound.values.values()


def test_writes_of_one_kind_share_one_rendering() -> None:
    policy = LastWriterWins(FIELDS)
    a = policy.stored_is_older(Version.of("5", "us-east-1", "01"), "eu-west-1", strict=False)
    b = policy.stored_is_older(Version.of("9", "us-west-2", "07"), "eu-west-1", strict=False)
    assert isinstance(a, Bound) and isinstance(b, Bound)
    assert a.template is b.template
    rendered = render(b)
    assert rendered is not None
    values = list(rendered.values.values())
    assert {"N": "9"} in values and {"S": "us-west-2"} in values and {"S": "07"} in values
    assert {"N": "5"} not in values and {"S": "01"} not in values


def test_larger_timestamp_wins() -> None:
    policy = LastWriterWins(FIELDS)
    assert newer(policy, Version.of("10", "ap-southeast-1"), Version.of("9", "us-west-2"))


def test_equal_timestamps_go_to_the_larger_region_name() -> None:
    policy = LastWriterWins(FIELDS)
    assert newer(policy, Version.of("5", "us-east-1"), Version.of("5", "eu-west-1"))
    assert not newer(policy, Version.of("5", "eu-west-1"), Version.of("5", "us-east-1"))


def test_numbers_compare_exactly_at_38_digits() -> None:
    policy = LastWriterWins(FIELDS)
    a = Version.of("12345678901234567890123456789012345678", "eu-west-1")
    b = Version.of("12345678901234567890123456789012345679", "eu-west-1")
    assert newer(policy, b, a)
    condition = policy.stored_is_older(b, "us-east-1", strict=True)
    assert condition.evaluate(replica_item(a))
    assert not condition.evaluate(replica_item(b))


def test_a_replay_of_the_same_version_applies_again_but_not_strictly() -> None:
    policy = LastWriterWins(FIELDS)
    version = Version.of("7", "us-east-1")
    assert policy.stored_is_older(version, "eu-west-1", strict=False).evaluate(
        replica_item(version)
    )
    assert not policy.stored_is_older(version, "eu-west-1", strict=True).evaluate(
        replica_item(version)
    )


def test_an_updated_replica_is_a_local_version_of_its_holder() -> None:
    item = replica_item(Version.of("3", "us-east-1"))
    item[FIELDS.timestamp] = {"N": "4"}
    assert stored_version(item, "eu-west-1", FIELDS) == Version.of("4", "eu-west-1")


def test_preferred_region_beats_newer_timestamps() -> None:
    policy = PreferredRegion("eu-west-1", FIELDS)
    assert newer(policy, Version.of("1", "eu-west-1"), Version.of("9", "us-east-1"))
    condition = policy.stored_is_older(Version.of("9", "us-east-1"), "us-west-2", strict=False)
    assert not condition.evaluate(replica_item(Version.of("1", "eu-west-1")))
    assert condition.evaluate(local_item("8"))


TIE_REGIONS = (*REGIONS, "us-east-10", "us-east-2", "eu-central-1", "ap-south-1")


@given(st.sampled_from(TIE_REGIONS), st.sampled_from(TIE_REGIONS), numbers(), st.data())
def test_on_equal_timestamps_the_larger_region_name_wins_by_plain_string_order(
    first: str, second: str, number: tuple[int, int], data: st.DataObject
) -> None:
    """Equal values, however spelled (5, 5.0, 5E0): the region name alone decides, in
    plain string order ("us-east-10" < "us-east-2"), in the pure order and the condition."""
    policy = LastWriterWins(FIELDS)
    a = Version.of(data.draw(spellings(number)), first)
    b = Version.of(data.draw(spellings(number)), second)
    assert newer(policy, a, b) is (first > second)
    condition = policy.stored_is_older(a, "us-west-2", strict=True)
    assert condition.evaluate(replica_item(b)) is (first > second)
