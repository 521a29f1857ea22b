"""The clauses of a DynamoDB ``UpdateExpression`` (SET, REMOVE, ADD, DELETE): where each
keyword stands and which attributes each clause's actions write, so a request can be
extended without taking a placeholder such as ``#set`` for a keyword, or a function's
commas for the end of an action. Pure: text in, text out."""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

__all__ = ["Clause", "clauses", "extended", "free", "written"]

VERBS = frozenset({"SET", "REMOVE", "ADD", "DELETE"})
# A placeholder (#name, :value), a name or number, or one character of punctuation.
_TOKEN = re.compile(r"[#:]?\w+|\S")


@dataclass(frozen=True)
class Clause:
    """One clause: its keyword (upper case), the offset just after the keyword, and the
    first path element of each action's target as written (a placeholder or a name)."""

    verb: str
    body: int
    targets: tuple[str, ...]


def clauses(expression: str) -> tuple[Clause, ...]:
    """The clauses of ``expression`` in order. A keyword counts only outside parentheses
    and not as a path element (``a.set``); the four keywords are reserved words, so an
    attribute of that name is always written as a placeholder, never bare."""
    found: list[tuple[str, int, list[str]]] = []
    depth, previous, expect_target = 0, "", False
    for match in _TOKEN.finditer(expression):
        text = match.group()
        keyword = depth == 0 and previous != "." and text.upper() in VERBS
        if keyword:
            found.append((text.upper(), match.end(), []))
        elif expect_target and found:
            found[-1][2].append(text)
        depth += {"(": 1, ")": -1}.get(text, 0)
        expect_target = keyword or (depth == 0 and text == ",")
        previous = text
    return tuple(Clause(verb, body, tuple(targets)) for verb, body, targets in found)


def written(
    expression: str, names: Mapping[str, str], verbs: Collection[str] = VERBS
) -> frozenset[str]:
    """The top-level attributes ``expression``'s actions write (placeholders resolved), in
    its ``verbs`` clauses (all four unless told)."""
    return frozenset(
        names.get(target, target)
        for clause in clauses(expression)
        if clause.verb in verbs
        for target in clause.targets
    )


def extended(expression: str, verb: str, action: str) -> str:
    """``expression`` with ``action`` first in its ``verb`` clause, or in a new one (a new
    SET clause goes first, any other last)."""
    for clause in clauses(expression):
        if clause.verb == verb:
            at = clause.body
            return f"{expression[:at]} {action},{expression[at:]}"
    if verb == "SET":
        return f"SET {action} {expression}".strip()
    return f"{expression} {verb} {action}".strip()


def free(base: str, taken: Collection[str]) -> str:
    """``base``, or ``base`` with the smallest numeric suffix, not in ``taken``."""
    candidates = itertools.chain([base], (f"{base}{n}" for n in itertools.count(1)))
    return next(name for name in candidates if name not in taken)
