"""diff under a residency rule: every region is compared against what the rule lets it
hold, including for items whose scope leaves out the reference region (the first one)."""

from __future__ import annotations

from dynamodb_replicator.ops.diff import DiffReport, Row, compare_bucket

EU, US1, US2 = "eu-west-1", "us-east-1", "us-west-2"
US_SCOPE = (US1, US2)


def row(digest: str, stamp: str = "10") -> Row:
    """A US item (may live in us-east-1 and us-west-2 only) as a region's scan reads it."""
    return Row("a", digest, stamp, US1, US_SCOPE)


def test_diff_reports_an_item_missing_in_its_scope_when_the_reference_is_outside_it() -> None:
    """The reference eu-west-1 rightly lacks the US item; us-east-1 holds it; us-west-2,
    inside its scope, lacks it (a lost write there). diff must not call that identical."""
    rows: dict[str, dict[str, Row]] = {EU: {}, US1: {"a": row("x")}, US2: {}}
    report = DiffReport("Orders", EU)
    assert compare_bucket(rows, EU, report) == ["a"]
    assert not report.identical


def test_diff_reports_diverged_copies_in_a_scope_that_leaves_out_the_reference() -> None:
    """us-east-1 and us-west-2 hold different contents of the US item (diverged); the
    reference eu-west-1 rightly holds none. diff must report the difference."""
    rows: dict[str, dict[str, Row]] = {EU: {}, US1: {"a": row("x", "10")}, US2: {"a": row("y")}}
    report = DiffReport("Orders", EU)
    assert compare_bucket(rows, EU, report) == ["a"]
    assert not report.identical
