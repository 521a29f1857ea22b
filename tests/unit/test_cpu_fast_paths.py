"""Review of h-cpu2's pure fast paths against the slow paths they stand for: the codec's
scalar shortcut in an image (``_image`` vs ``_repaired`` on every attribute), the
conditions' placeholder lookup (a rendered condition names each attribute once, and
means what the tree says, whatever the attribute's name) and ``ItemKey``'s cached text
(equality, hashing, pickling, copying and ``dataclasses.replace`` unaffected)."""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import pickle
import re
import types
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dynamodb_replicator.core.codec import _image, _repaired, key_to_json
from dynamodb_replicator.core.conditions import (
    And,
    AttributeType,
    Compare,
    Condition,
    Exists,
    Not,
    Or,
    Path,
    Value,
    render,
)
from dynamodb_replicator.core.model import ItemKey, Version, parse_number
from dynamodb_replicator.core.policy import is_marked, stored_version

from .strategies import FIELDS

scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=5)),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": b}, st.binary(max_size=5)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda ss: {"SS": ss}, st.lists(st.text(max_size=3), max_size=3)),
    st.just({}),  # DynamoDB Local's typeless empty map
)
attribute_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=3), inner, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
    ),
    max_leaves=8,
)
malformed = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.builds(lambda a, b: {"S": a, "N": b}, st.text(max_size=2), st.text(max_size=2)),
    attribute_values.map(collections.OrderedDict),  # a dict, but not exactly one
    attribute_values.map(types.MappingProxyType),  # a Mapping, not a dict
    st.builds(lambda m: {"M": m}, st.integers()),
)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        found = call()
    except Exception as exc:  # the slow path's error is part of what must not change
        return "error", type(exc)
    return "ok", [(name, value, type(value)) for name, value in found.items()]


@given(st.dictionaries(st.text(max_size=4), st.one_of(attribute_values, malformed), max_size=6))
def test_an_images_fast_path_gives_what_repairing_every_attribute_gives(
    raw: dict[str, Any],
) -> None:
    """For any image (well-formed attributes, typeless empty maps at any depth, and
    malformed values of every kind), ``_image``'s scalar shortcut gives what ``_repaired``
    on each attribute gives: the same attributes, values, value types and order; or the
    same error."""
    fast = outcome(lambda: _image(raw, from_json=False, what="image"))
    slow = outcome(lambda: {name: _repaired(value) for name, value in raw.items()})
    assert fast == slow


names = st.text(
    st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=6
) | st.sampled_from(["#n0", ":v0", "a.b", "a[0]", "#n1 = :v0", "AND", "(x)", " "])
values = scalars.filter(bool)
operands: st.SearchStrategy[Path | Value] = st.one_of(
    st.builds(Path, names), st.builds(Value, values)
)
leaves: st.SearchStrategy[Condition] = st.one_of(
    st.builds(Compare, operands, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), operands),
    st.builds(Exists, st.builds(Path, names)),
    st.builds(AttributeType, st.builds(Path, names), st.sampled_from(["S", "N", "M"])),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda ops: And(tuple(ops)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda ops: Or(tuple(ops)), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=10,
)


def spelled(node: Any) -> str:
    """The condition written out with its names and values in place: what a rendering
    must mean once its placeholders are substituted back."""
    if isinstance(node, Path):
        return f"<name {node.name!r}>"
    if isinstance(node, Value):
        return f"<value {json.dumps(node.value, default=repr, sort_keys=True)}>"
    if isinstance(node, Compare):
        return f"{spelled(node.left)} {node.operator} {spelled(node.right)}"
    if isinstance(node, Exists):
        return f"attribute_exists({spelled(node.path)})"
    if isinstance(node, AttributeType):
        return f"attribute_type({spelled(node.path)}, {spelled(Value({'S': node.kind}))})"
    if isinstance(node, Not):
        return f"NOT ({spelled(node.operand)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(f"({spelled(op)})" for op in node.operands)


@given(conditions)
def test_a_rendered_condition_names_each_attribute_once_and_means_its_tree(
    condition: Condition,
) -> None:
    """Whatever the attribute names (ones that look like placeholders, operators, paths,
    any Unicode), the rendering has one placeholder per distinct name, every placeholder
    in the expression is defined, and with them substituted back the expression is the
    tree written out."""
    rendered = render(condition)
    assert rendered is not None
    assert len(set(rendered.names.values())) == len(rendered.names)
    placeholders = set(re.findall(r"#n\d+|:v\d+", rendered.expression))
    assert placeholders == set(rendered.names) | set(rendered.values)

    def back(match: re.Match[str]) -> str:
        token = match.group()
        if token in rendered.names:
            return spelled(Path(rendered.names[token]))
        return spelled(Value(rendered.values[token]))

    assert re.sub(r"#n\d+|:v\d+", back, rendered.expression) == spelled(condition)


key_parts = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=4)),
        st.builds(
            lambda n: {"N": str(n)},
            st.integers() | st.decimals(allow_nan=False, allow_infinity=False, places=3),
        ),
        st.builds(lambda b: {"B": b}, st.binary(max_size=4)),
    ),
    min_size=1,
    max_size=2,
)


@given(key_parts, key_parts)
def test_an_item_keys_cached_text_changes_nothing_else(
    attributes: dict[str, Any], other: dict[str, Any]
) -> None:
    """A key's text, cached once asked, is the one encoding's text; equality and the
    hash ignore whether it was asked; a pickled or copied key keeps the text right; a
    replaced key has its own text, not the original's."""
    key, twin = ItemKey.from_attributes(attributes), ItemKey.from_attributes(attributes)
    text = key_to_json(attributes)
    assert str(key) == text and key._text == text  # the state: cached
    assert str(key) == text and twin._text is None
    assert key == twin and hash(key) == hash(twin) and {key: 1}[twin] == 1
    pickled = [pickle.loads(pickle.dumps(key, p)) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    for clone in (*pickled, copy.copy(key), copy.deepcopy(key)):
        assert clone == key and str(clone) == text
    replaced = dataclasses.replace(key, parts=ItemKey.from_attributes(other).parts)
    assert str(replaced) == key_to_json(other)
    assert (replaced == key) == (key_to_json(other) == text)


def _reference_version(item: dict[str, Any], holder: str, own_seq: str) -> Version | None:
    """``stored_version`` as it read an item before its marker shortcut: ``is_marked``
    on every item."""
    stamp = item.get(FIELDS.timestamp)
    if stamp is None or "N" not in stamp:
        return None
    value = parse_number(stamp["N"])
    if value is None:
        return None
    if not is_marked(item, FIELDS):
        return Version(value, holder, stamp["N"], own_seq)
    seq = item.get(FIELDS.origin_seq, {}).get("S", "")
    return Version(value, str(item[FIELDS.origin]["S"]), stamp["N"], str(seq))


stamp_spellings = st.sampled_from(["5", "5.0", "05", "1e3", "1000", "x", "NaN"])
markers: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    stamp_spellings.map(lambda n: {"N": n}),
    stamp_spellings.map(lambda n: {"S": n}),
    st.just({}),
)
origins: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.just({"S": "us-east-1"}), st.just({"N": "1"}), st.just({}), st.just("xS")
)


@given(stamp_spellings, markers, origins, st.sampled_from(["", "0007"]), st.booleans())
def test_a_stored_items_version_reads_as_is_marked_says_whatever_its_marker_and_origin(
    stamp: str, marker: Any, origin: Any, seq: str, own: bool
) -> None:
    """``stored_version`` takes an item whose marker is spelled as its ``__timestamp`` for
    marked without parsing the number again: for any marker (absent, another spelling,
    not a Number, empty) and origin (absent, not a string, not even an AttributeValue),
    it reads every item as ``is_marked`` on it says (or fails as it failed)."""
    item: dict[str, Any] = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": stamp}}
    if marker is not None:
        item[FIELDS.marker] = marker
    if origin is not None:
        item[FIELDS.origin] = origin
    if seq:
        item[FIELDS.origin_seq] = {"S": seq}
    own_seq = "~" if own else ""
    got = outcome(lambda: {"v": stored_version(item, "eu-west-1", FIELDS, own_seq=own_seq)})
    want = outcome(lambda: {"v": _reference_version(item, "eu-west-1", own_seq)})
    assert got == want
