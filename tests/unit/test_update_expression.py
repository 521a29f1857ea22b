"""The clauses of an UpdateExpression, as the stamper extends them."""

from __future__ import annotations

import pytest

from dynamodb_replicator.core.update_expression import clauses, extended, free, written


def test_keywords_are_found_in_any_case_but_never_in_placeholders_paths_or_functions() -> None:
    expression = "set #set = list_append(#set, :add), a.b[0] = :v  ADD #add :one remove #remove"
    assert [(c.verb, c.targets) for c in clauses(expression)] == [
        ("SET", ("#set", "a")),
        ("ADD", ("#add",)),
        ("REMOVE", ("#remove",)),
    ]


def test_written_resolves_placeholders_to_the_top_level_attribute() -> None:
    names = {"#ts": "__timestamp", "#m": "__replicaTimestamp", "#x": "x"}
    assert written("SET #ts = :t, y = #m REMOVE #x.inner, z[1]", names) == {
        "__timestamp",
        "x",
        "y",
        "z",
    }
    assert written("", names) == frozenset()


@pytest.mark.parametrize(
    ("expression", "verb", "expected"),
    [
        ("SET a = :a REMOVE b", "SET", "SET n = :n, a = :a REMOVE b"),
        ("SET a = :a REMOVE b", "REMOVE", "SET a = :a REMOVE n, b"),
        ("ADD #set :one", "SET", "SET n = :n ADD #set :one"),
        ("SET #remove = :remove", "REMOVE", "SET #remove = :remove REMOVE n"),
        ("", "SET", "SET n = :n"),
    ],
)
def test_an_action_goes_first_in_its_clause_or_in_a_new_one(
    expression: str, verb: str, expected: str
) -> None:
    action = "n = :n" if verb == "SET" else "n"
    assert extended(expression, verb, action) == expected


def test_a_free_placeholder_is_suffixed_until_unused() -> None:
    assert free("#m", {"#a"}) == "#m"
    assert free("#m", {"#m", "#m1"}) == "#m2"
