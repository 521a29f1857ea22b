"""Review of the conflict condition's template cache (core/conditions.py ``Template``,
``Bound``; core/policy.py ``_StoredItem.older``): every write must send, and the in-memory
store evaluate, exactly the condition the tree built per write said before the cache
(b413221's ``LastWriterWins.stored_is_older``, rebuilt here as the reference), whatever
writes warmed the cache first, from however many threads."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.core import policy as policy_module
from dynamodb_replicator.core.conditions import (
    AttributeType,
    Compare,
    Condition,
    Const,
    Exists,
    Path,
    Rendered,
    Value,
    all_of,
    any_of,
    negate,
    render,
)
from dynamodb_replicator.core.model import AttributeValue, Item, ItemKey, SystemAttributes, Version
from dynamodb_replicator.core.plan import PutVersion
from dynamodb_replicator.core.policy import LATEST, LastWriterWins
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock

from .strategies import FIELDS, regions, stored_items, versions


def _reference(fields: SystemAttributes, incoming: Version, holder: str, strict: bool) -> Condition:
    """b413221's tree, built per write (git show b413221:src/.../core/policy.py)."""
    stamp, origin, seq_path = Path(fields.timestamp), Path(fields.origin), Path(fields.origin_seq)
    marked = all_of(Compare(Path(fields.marker), "=", stamp), AttributeType(origin, "S"))
    unmarked = negate(marked)
    missing_seq = negate(Exists(seq_path))
    operator = "<" if strict else "<="

    def seq() -> Condition:
        if not incoming.seq:
            return missing_seq if operator == "<=" else Const(False)
        return any_of(missing_seq, Compare(seq_path, operator, Value({"S": incoming.seq})))

    region = Value({"S": incoming.origin})
    in_order = any_of(Compare(origin, "<", region), all_of(Compare(origin, "=", region), seq()))
    own = (holder, LATEST) < (incoming.origin, incoming.seq) or (
        operator == "<=" and (holder, LATEST) == (incoming.origin, incoming.seq)
    )
    timestamp = Value({"N": incoming.raw_timestamp})
    return any_of(
        negate(AttributeType(stamp, "N")),
        Compare(stamp, "<", timestamp),
        all_of(
            Compare(stamp, "=", timestamp),
            any_of(all_of(marked, in_order), all_of(unmarked, Const(own))),
        ),
    )


def _wire(rendered: Rendered | None) -> tuple[str, list[object], list[object]] | None:
    if rendered is None:
        return None
    return rendered.expression, list(rendered.names.items()), list(rendered.values.items())


WRITES = st.lists(st.tuples(versions(), regions, st.booleans()), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(writes=WRITES, items=st.lists(stored_items(), min_size=1, max_size=6))
def test_every_write_sends_and_evaluates_the_condition_the_tree_built_per_write_said(
    writes: list[tuple[Version, str, bool]], items: list[dict[str, AttributeValue] | None]
) -> None:
    """A fresh cache, warmed by the writes in their order: each write's condition renders
    as the reference's text, names and values (in order) and agrees with it on items."""
    policy_module._stored.cache_clear()
    lww = LastWriterWins(FIELDS)
    for incoming, holder, strict in writes:
        condition = lww.stored_is_older(incoming, holder, strict=strict)
        reference = _reference(FIELDS, incoming, holder, strict)
        assert _wire(render(condition)) == _wire(render(reference))
        for item in items:
            assert condition.evaluate(item) is reference.evaluate(item)


def test_the_first_uses_of_a_fresh_cache_from_many_threads_send_the_reference() -> None:
    """Threads racing to build the templates of one fresh SystemAttributes: each write still
    renders as the reference (two equal templates: either serves)."""
    fields = SystemAttributes(timestamp="__ts_race")
    kinds = [
        (Version.of("5", "us-east-1", seq), holder, strict)
        for seq in ("", "0007")
        for holder in ("eu-west-1", "us-west-2")
        for strict in (False, True)
    ]
    failures: list[str] = []
    start = threading.Barrier(16)

    def write(n: int) -> None:
        start.wait()
        for i in range(50):
            incoming, holder, strict = kinds[(n + i) % len(kinds)]
            got = render(LastWriterWins(fields).stored_is_older(incoming, holder, strict=strict))
            want = render(_reference(fields, incoming, holder, strict))
            if _wire(got) != _wire(want):
                failures.append(f"{incoming} {holder} {strict}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_a_caller_changing_one_writes_names_does_not_change_the_next_writes() -> None:
    """``Rendered.names`` is a Mapping; a caller that merges its own placeholders into it
    (as an UpdateItem building its expression on top of a condition would) must not reach
    the next write's request."""
    lww = LastWriterWins(FIELDS)
    first = render(lww.stored_is_older(Version.of("5", "us-east-1"), "eu-west-1", strict=False))
    assert first is not None
    before = dict(first.names)
    with contextlib.suppress(TypeError):  # read-only: what this test asks for
        first.names["#n0"] = "somethingElse"  # type: ignore[index]  # what a caller may do
    second = render(lww.stored_is_older(Version.of("9", "us-west-2"), "eu-west-1", strict=False))
    assert second is not None
    try:
        assert dict(second.names) == before
    finally:
        if isinstance(first.names, dict):
            first.names.update(before)  # mend the shared template for the other tests


@dataclass
class _Recording:
    """A store that records the condition of each put and refuses it (nothing stored)."""

    region: str
    conditions: list[Condition] = field(default_factory=list)

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        self.conditions.append(condition)
        return StoreResult(False, None)


@settings(max_examples=200, deadline=None)
@given(writes=WRITES, items=st.lists(stored_items(), min_size=1, max_size=6))
def test_an_updates_present_only_put_sends_the_tree_of_exists_and_the_rule(
    writes: list[tuple[Version, str, bool]], items: list[dict[str, AttributeValue] | None]
) -> None:
    """P1u's condition (``WriteProtocol.put_present``, its template made once per kind of
    write) renders as ``all_of(Exists(key), rule)`` with the rule's reference tree: the same
    text, names and values in order; and it agrees with that tree on items."""
    for incoming, holder, strict in writes:
        store = _Recording(holder)
        protocol = WriteProtocol(
            store,  # type: ignore[arg-type]  # only put is called
            LastWriterWins(FIELDS),
            FIELDS,
            ManualClock(),
            "_tombstones",
            3600,
        )
        op = PutVersion(
            ItemKey.from_attributes({"pk": {"S": "k"}}),
            incoming,
            {"pk": {"S": "k"}, FIELDS.timestamp: {"N": incoming.raw_timestamp}},
            "1",
            replaces=Version.of("1", holder),
            strict=strict,
        )
        assert protocol.put_present("T", op) is None  # the state: the put was sent, refused
        (sent,) = store.conditions
        reference = all_of(Exists(Path("pk")), _reference(FIELDS, incoming, holder, strict))
        assert _wire(render(sent)) == _wire(render(reference))
        for item in items:
            assert sent.evaluate(item) is reference.evaluate(item)
