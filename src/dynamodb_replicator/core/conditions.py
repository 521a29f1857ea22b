"""Condition expressions as small pure objects.

Each node renders to DynamoDB's ``ConditionExpression`` syntax and also evaluates against
an item in plain Python, with DynamoDB's semantics (a comparison with a missing attribute
or between different types is false). The conflict policy builds one tree per write; the
same tree drives the real conditional write and the pure tests, so the two cannot drift.

A ``Template`` is a tree whose values are left open (``Slot``), rendered once; ``Bound``
fills in one write's values. Its rendering is the tree's with those values in place, the
same text, names and values in the same order, for the cost of a dict of values: the
conflict policy's condition differs between writes of one kind only in its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from dynamodb_replicator.core.model import AttributeValue, Item, parse_number

__all__ = [
    "FALSE",
    "TRUE",
    "And",
    "AttributeType",
    "Bound",
    "Compare",
    "Condition",
    "Const",
    "Exists",
    "Not",
    "Or",
    "Path",
    "Rendered",
    "Slot",
    "Template",
    "Value",
    "all_of",
    "any_of",
    "negate",
    "render",
]

_OPERATORS = {"=", "<>", "<", "<=", ">", ">="}


@dataclass(slots=True)
class _Names:
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, AttributeValue] = field(default_factory=dict)
    # attribute -> its placeholder: a put's condition names its four attributes a dozen
    # times, and a scan of ``names`` per mention was a tenth of rendering it.
    placeholders: dict[str, str] = field(default_factory=dict)
    # value placeholder -> its Slot's index, while a Template renders
    open: dict[str, int] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        placeholder = self.placeholders.get(attribute)
        if placeholder is None:
            placeholder = self.placeholders[attribute] = f"#n{len(self.names)}"
            self.names[placeholder] = attribute
        return placeholder

    def value(self, value: AttributeValue) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def operand(self, operand: Operand) -> str:
        """A comparison's operand: ``Path.to_expression`` or ``Value.to_expression``, in
        one call instead of two (a put's condition has a dozen comparisons)."""
        if operand.__class__ is Path:
            placeholder = self.placeholders.get(operand.name)
            return placeholder or self.name(operand.name)
        return operand.to_expression(self)


class Condition(Protocol):
    def to_expression(self, names: _Names) -> str: ...

    def evaluate(self, item: Item | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class Path:
    """A top-level attribute of the stored item."""

    name: str

    def resolve(self, item: Item | None) -> AttributeValue | None:
        return None if item is None else item.get(self.name)

    def to_expression(self, names: _Names) -> str:
        return names.name(self.name)


@dataclass(frozen=True, slots=True)
class Value:
    """A constant AttributeValue."""

    value: AttributeValue

    def resolve(self, item: Item | None) -> AttributeValue | None:
        return self.value

    def to_expression(self, names: _Names) -> str:
        return names.value(self.value)


@dataclass(frozen=True, slots=True)
class Slot:
    """A value of a ``Template`` left open: the ``index`` of its value in ``Bound.values``.
    Only a template holds one; ``Bound`` puts the value in its place before evaluating."""

    index: int

    def resolve(self, item: Item | None) -> AttributeValue | None:
        raise TypeError("an open slot has no value: bind its template first")

    def to_expression(self, names: _Names) -> str:
        placeholder = names.value({})  # the write's value goes here (Template.bind)
        names.open[placeholder] = self.index
        return placeholder


Operand = Path | Value | Slot


def _comparable(value: AttributeValue) -> tuple[str, Any] | None:
    ((kind, raw),) = value.items()
    if kind == "N":
        number = parse_number(raw)
        return None if number is None else ("N", number)
    if kind == "S":
        # DynamoDB orders strings by UTF-8 bytes, which is the order of code points.
        return ("S", raw)
    if kind == "B":
        return ("B", bytes(raw))
    return None


@dataclass(frozen=True, slots=True)
class Compare:
    left: Operand
    operator: str
    right: Operand

    def __post_init__(self) -> None:
        if self.operator not in _OPERATORS:
            raise ValueError(f"unknown comparison operator {self.operator!r}")

    def to_expression(self, names: _Names) -> str:
        return f"{names.operand(self.left)} {self.operator} {names.operand(self.right)}"

    def evaluate(self, item: Item | None) -> bool:
        left, right = self.left.resolve(item), self.right.resolve(item)
        if left is None or right is None:
            return False
        a, b = _comparable(left), _comparable(right)
        if a is None or b is None or a[0] != b[0]:
            return False
        x, y = a[1], b[1]
        result: bool = {
            "=": x == y,
            "<>": x != y,
            "<": x < y,
            "<=": x <= y,
            ">": x > y,
            ">=": x >= y,
        }[self.operator]
        return result


@dataclass(frozen=True, slots=True)
class AttributeType:
    path: Path
    kind: str

    def to_expression(self, names: _Names) -> str:
        placeholder = names.value({"S": self.kind})
        return f"attribute_type({self.path.to_expression(names)}, {placeholder})"

    def evaluate(self, item: Item | None) -> bool:
        value = self.path.resolve(item)
        if value is None:
            return False
        if self.kind == "N":
            # DynamoDB never stores a malformed Number; reject ours the same way.
            return "N" in value and parse_number(value["N"]) is not None
        return self.kind in value


@dataclass(frozen=True, slots=True)
class Exists:
    path: Path

    def to_expression(self, names: _Names) -> str:
        return f"attribute_exists({self.path.to_expression(names)})"

    def evaluate(self, item: Item | None) -> bool:
        return self.path.resolve(item) is not None


@dataclass(frozen=True, slots=True)
class Const:
    """A constant truth value; folded away by ``all_of``/``any_of``/``Not``."""

    value: bool

    def to_expression(self, names: _Names) -> str:
        raise ValueError("a constant condition cannot be rendered; fold it first")

    def evaluate(self, item: Item | None) -> bool:
        return self.value


TRUE = Const(True)
FALSE = Const(False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition

    def to_expression(self, names: _Names) -> str:
        return f"NOT ({self.operand.to_expression(names)})"

    def evaluate(self, item: Item | None) -> bool:
        return not self.operand.evaluate(item)


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Condition, ...]

    def to_expression(self, names: _Names) -> str:
        # A list, not a generator: ``join`` makes one of a generator anyway.
        return " AND ".join([f"({op.to_expression(names)})" for op in self.operands])

    def evaluate(self, item: Item | None) -> bool:
        return all(op.evaluate(item) for op in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Condition, ...]

    def to_expression(self, names: _Names) -> str:
        return " OR ".join([f"({op.to_expression(names)})" for op in self.operands])

    def evaluate(self, item: Item | None) -> bool:
        return any(op.evaluate(item) for op in self.operands)


def negate(operand: Condition) -> Condition:
    if isinstance(operand, Const):
        return Const(not operand.value)
    return Not(operand)


def _is(op: Condition, truth: bool) -> bool:
    # A type test, not ``op == TRUE``: dataclass equality costs two Python-level calls per
    # operand, and conditions are built for every replicated write.
    return isinstance(op, Const) and op.value == truth


def all_of(*operands: Condition) -> Condition:
    # One plain loop (no comprehension, no generator): a put builds a dozen of these.
    kept: list[Condition] = []
    for op in operands:
        if isinstance(op, Const):
            if not op.value:
                return FALSE
        else:
            kept.append(op)
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def any_of(*operands: Condition) -> Condition:
    kept: list[Condition] = []
    for op in operands:
        if isinstance(op, Const):
            if op.value:
                return TRUE
        else:
            kept.append(op)
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else Or(tuple(kept))


@dataclass(frozen=True, slots=True)
class Rendered:
    """A condition expression and its name and value placeholders (the adapter turns it
    into request arguments: ``aws.expressions.condition_kwargs``)."""

    expression: str
    names: Mapping[str, str]
    values: Mapping[str, AttributeValue]


class Template:
    """A condition with open values (``Slot``), rendered once; ``bind`` fills them in."""

    __slots__ = ("_after", "_expression", "_names", "_open", "_values", "condition")

    def __init__(self, condition: Condition) -> None:
        if isinstance(condition, Const):
            raise ValueError("a constant condition needs no template")
        self.condition = condition
        names = _Names()
        self._expression = condition.to_expression(names)
        # Read-only: every write of this kind is handed the same mapping.
        self._names: Mapping[str, str] = MappingProxyType(names.names)
        self._values = names.values
        self._open = tuple(names.open.items())
        # first -> ``after(first)``; written by whichever thread asks first (two equal
        # templates: either serves)
        self._after: dict[Condition, Template] = {}

    def bind(self, *values: AttributeValue) -> Bound:
        """This condition with ``values`` in its slots (by index)."""
        return Bound(self, values)

    def after(self, first: Condition) -> Template:
        """The template of ``all_of(first, this condition)`` (``first`` without a slot),
        made once per ``first``: bound to the same values, it is that condition with this
        one bound, rendered the same (an update's P1u, ``core.writes``)."""
        found = self._after.get(first)
        if found is None:
            found = self._after[first] = Template(all_of(first, self.condition))
        return found

    def rendered(self, values: tuple[AttributeValue, ...]) -> Rendered:
        """What ``render`` makes of the tree with ``values`` in its slots: the same text,
        names and values. The names are the template's own, read-only
        (``condition_kwargs`` copies them into a request)."""
        filled = dict(self._values)  # insertion order: as rendering the tree lists them
        for placeholder, index in self._open:
            filled[placeholder] = values[index]
        return Rendered(self._expression, self._names, filled)


def _filled(condition: Condition, values: tuple[AttributeValue, ...]) -> Condition:
    """``condition`` with ``values`` in its slots (the same tree otherwise)."""
    if isinstance(condition, Compare):
        left, right = condition.left, condition.right
        return Compare(
            Value(values[left.index]) if isinstance(left, Slot) else left,
            condition.operator,
            Value(values[right.index]) if isinstance(right, Slot) else right,
        )
    if isinstance(condition, Not):
        return Not(_filled(condition.operand, values))
    if isinstance(condition, And):
        return And(tuple(_filled(op, values) for op in condition.operands))
    if isinstance(condition, Or):
        return Or(tuple(_filled(op, values) for op in condition.operands))
    return condition  # no slot inside: Exists, AttributeType, Const


@dataclass(frozen=True, slots=True)
class Bound:
    """A ``Template`` with one write's values: a condition like the tree it stands for."""

    template: Template
    values: tuple[AttributeValue, ...]

    def tree(self) -> Condition:
        """The condition tree itself, values in place."""
        return _filled(self.template.condition, self.values)

    def to_expression(self, names: _Names) -> str:
        return self.tree().to_expression(names)

    def evaluate(self, item: Item | None) -> bool:
        return self.tree().evaluate(item)


def render(condition: Condition) -> Rendered | None:
    """Render a condition; None when it is always true (write unconditionally)."""
    if condition.__class__ is Bound:  # the class, not isinstance: a test per write
        return condition.template.rendered(condition.values)
    if _is(condition, True):
        return None
    if _is(condition, False):
        raise ValueError("an always-false condition must not be sent; skip the write")
    names = _Names()
    expression = condition.to_expression(names)
    return Rendered(expression, names.names, names.values)
