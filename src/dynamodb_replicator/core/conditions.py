"""Condition expressions as small pure objects.

Each node renders to DynamoDB's ``ConditionExpression`` syntax and also evaluates against
an item in plain Python, with DynamoDB's semantics (a comparison with a missing attribute
or between different types is false). The conflict policy builds one tree per write; the
same tree drives the real conditional write and the pure tests, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynamodb_replicator.core.model import AttributeValue, Item, parse_number

__all__ = [
    "FALSE",
    "TRUE",
    "And",
    "AttributeType",
    "Compare",
    "Condition",
    "Const",
    "Exists",
    "Not",
    "Or",
    "Path",
    "Rendered",
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


Operand = Path | Value


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


def render(condition: Condition) -> Rendered | None:
    """Render a condition; None when it is always true (write unconditionally)."""
    if _is(condition, True):
        return None
    if _is(condition, False):
        raise ValueError("an always-false condition must not be sent; skip the write")
    names = _Names()
    expression = condition.to_expression(names)
    return Rendered(expression, names.names, names.values)
