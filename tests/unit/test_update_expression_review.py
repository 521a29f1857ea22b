"""Adversarial review of the update-expression tokenizer (core/update_expression.py) and the
stamper's rewriting of UpdateItem requests: expressions DynamoDB accepts, generated from its
grammar in any case, spacing and clause order, must split into the clauses and targets they
were built from, and every stamped update must leave the item with a fresh timestamp and
without the marker unless it writes them, and an update removing the timestamp is refused.
Each defect found was a strict xfail until fixed."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.update_expression import clauses, extended
from dynamodb_replicator.stamping import Stamper
from dynamodb_replicator.testing.clock import ManualClock

from .strategies import FIELDS

TS, MARKER = FIELDS.timestamp, FIELDS.marker
VERBS = ("SET", "REMOVE", "ADD", "DELETE")


class Model:
    def __init__(self, name: str) -> None:
        self.name = name


def stamped(params: dict[str, Any]) -> dict[str, Any]:
    Stamper(ManualClock(1_700_000_000.0), FIELDS)(params, Model("UpdateItem"))
    return params


def targets(params: dict[str, Any]) -> dict[str, list[str]]:
    """Each clause's targets, placeholders resolved, of a rewritten request."""
    names = params.get("ExpressionAttributeNames", {})
    found = clauses(params["UpdateExpression"])
    return {c.verb: [names.get(t, t) for t in c.targets] for c in found}


# --- a generator of expressions DynamoDB's grammar accepts -----------------------------------
# Bare names avoid reserved words (DynamoDB refuses them bare) but contain the verbs; the
# placeholders are the verbs themselves, in any case, and the stamper's own names.
BARE = st.sampled_from(["a", "ADDRESS", "settings", "removed", "x1", "deleted_at", "Sets"])
PLACEHOLDER = st.sampled_from(
    ["#set", "#SET", "#Remove", "#add", "#delete", "#t", "#__timestamp", "#replicatorMarker"]
)
SPACE = st.sampled_from(["", " ", "  ", "\n", "\t", " \n "])
NEED = st.sampled_from([" ", "\n", "\t", "  \r\n"])  # whitespace where a token needs some


def word(verb: str) -> st.SearchStrategy[str]:
    return st.sampled_from([verb, verb.lower(), verb.capitalize()])


@st.composite
def path(draw: st.DrawFn) -> tuple[str, str]:
    """(the path as written, its first element)."""
    first = draw(st.one_of(BARE, PLACEHOLDER))
    rest = draw(
        st.lists(
            st.one_of(st.builds("[{}]".format, st.integers(0, 12)), PLACEHOLDER.map(".{}".format)),
            max_size=3,
        )
    )
    return first + "".join(rest), first


@st.composite
def operand(draw: st.DrawFn, depth: int = 0) -> str:
    value = st.sampled_from([":v", ":set", ":REMOVE", ":add1"])
    choices = [value, path().map(lambda p: p[0])]
    if depth < 2:
        inner = operand(depth + 1)
        s = draw(SPACE)
        choices += [
            st.builds(lambda p, v: f"if_not_exists({s}{p[0]}{s},{s}{v}{s})", path(), inner),
            st.builds(lambda x, y: f"list_append({s}{x},{s}{y}{s})", inner, inner),
        ]
    if depth == 0:  # DynamoDB takes arithmetic only as a whole SET value
        choices.append(st.builds(lambda x, y: f"{x}{s}+{s}{y}", inner, inner))
    chosen: str = draw(st.one_of(*choices))
    return chosen


@st.composite
def action(draw: st.DrawFn, verb: str) -> tuple[str, str]:
    written_path, first = draw(path())
    s = draw(SPACE)
    if verb == "SET":
        return f"{written_path}{s}={s}{draw(operand())}", first
    if verb == "REMOVE":
        return written_path, first
    return f"{written_path}{draw(NEED)}:v", first


@st.composite
def expression(draw: st.DrawFn) -> tuple[str, list[tuple[str, list[str]]]]:
    """(an update expression, its clauses as (verb, first path elements))."""
    verbs = draw(st.permutations(VERBS).map(lambda v: v[: draw(st.integers(1, 4))]))
    text, expected = draw(SPACE), []
    for verb in verbs:
        actions = draw(st.lists(action(verb), min_size=1, max_size=3))
        s = draw(SPACE)
        body = f"{s},{s}".join(a for a, _ in actions)
        text += f"{draw(word(verb))}{draw(NEED)}{body}{draw(NEED)}"
        expected.append((verb, [first for _, first in actions]))
    return text, expected


@settings(max_examples=100, deadline=None)
@given(expression())
def test_generated_expressions_split_into_the_clauses_they_were_built_from(
    case: tuple[str, list[tuple[str, list[str]]]],
) -> None:
    text, expected = case
    found = [(c.verb, list(c.targets)) for c in clauses(text)]
    assert found == expected


@settings(max_examples=60, deadline=None)
@given(expression(), st.sampled_from(VERBS))
def test_an_extended_expression_keeps_every_clause_and_gains_one_action(
    case: tuple[str, list[tuple[str, list[str]]]], verb: str
) -> None:
    text, expected = case
    added = extended(text, verb, "#new :n" if verb in {"ADD", "DELETE"} else "#new = :n")
    if verb == "REMOVE":
        added = extended(text, verb, "#new")
    found = {c.verb: list(c.targets) for c in clauses(added)}
    want = dict(expected)
    want[verb] = ["#new", *want.get(verb, [])]
    assert found == want


@settings(max_examples=60, deadline=None)
@given(expression())
def test_a_stamped_update_sets_the_timestamp_and_removes_the_marker_unless_it_writes_them(
    case: tuple[str, list[tuple[str, list[str]]]],
) -> None:
    text, expected = case
    names = {"#set": "set", "#SET": "SET", "#Remove": "r", "#add": "ADD", "#delete": "d"}
    names |= {"#t": "t", "#__timestamp": TS, "#replicatorMarker": MARKER}
    names = {k: v for k, v in names.items() if re.search(rf"{k}\b", text)}
    if TS in dict((v, [names.get(f, f) for f in fs]) for v, fs in expected).get("REMOVE", []):
        with pytest.raises(ConfigError, match="removes"):  # it would leave no timestamp
            stamped({"UpdateExpression": text, "ExpressionAttributeNames": names})
        return
    params = stamped({"UpdateExpression": text, "ExpressionAttributeNames": names})
    out_names = params["ExpressionAttributeNames"]
    result = {
        c.verb: [out_names.get(t, t) for t in c.targets]
        for c in clauses(params["UpdateExpression"])
    }
    firsts = {names.get(f, f) for _, fs in expected for f in fs}
    if TS not in firsts:
        assert result["SET"][0] == TS
    if MARKER not in firsts:
        assert result["REMOVE"][0] == MARKER
    # every placeholder the request defines is used, every one used is defined
    used = set(re.findall(r"#\w+", params["UpdateExpression"]))
    assert used == set(out_names)


# --- defects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "legacy",
    [{"Expected": {"x": {"Exists": False}}}, {"ConditionalOperator": "AND"}],
    ids=["Expected", "ConditionalOperator"],
)
def test_a_legacy_conditional_update_without_attribute_updates_stays_legacy(
    legacy: dict[str, Any],
) -> None:
    params = stamped({"Key": {"pk": {"S": "k"}}, **legacy})
    assert "UpdateExpression" not in params
    updates = params["AttributeUpdates"]
    assert updates[TS]["Action"] == "PUT"
    assert updates[MARKER] == {"Action": "DELETE"}


def test_an_update_removing_the_timestamp_still_leaves_one_or_is_refused() -> None:
    params: dict[str, Any] = {
        "UpdateExpression": "SET v = :v REMOVE #t",
        "ExpressionAttributeNames": {"#t": TS},
        "ExpressionAttributeValues": {":v": {"S": "x"}},
    }
    try:
        params = stamped(params)
    except ConfigError:
        return
    names = params["ExpressionAttributeNames"]
    sets = {
        c.verb: [names.get(t, t) for t in c.targets] for c in clauses(params["UpdateExpression"])
    }
    assert TS in sets.get("SET", []) and TS not in sets.get("REMOVE", [])


def test_a_legacy_update_deleting_the_timestamp_still_leaves_one_or_is_refused() -> None:
    params: dict[str, Any] = {
        "AttributeUpdates": {TS: {"Action": "DELETE"}, "v": {"Action": "DELETE"}}
    }
    try:
        params = stamped(params)
    except ConfigError:
        return
    assert params["AttributeUpdates"][TS]["Action"] == "PUT"
