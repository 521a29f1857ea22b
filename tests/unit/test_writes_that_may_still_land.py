"""A write whose answer was lost may still land up to the request lifetime after its request
started (docs/concepts/guarantees.md, "Timing and clocks", assumption (1)): the writer waits
that out before anything else of the key runs (core/landing.py, core/writer.py). The real
writer over the in-memory store; the protocol's clock is review 4's ``Landings`` over a
ManualClock (time goes by only while the writer waits, and due requests land then)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Mapping

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.aws.factory import build_replicator, build_writer
from dynamodb_replicator.awslambda.handler import process_event
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.errors import (
    ConditionFailedError,
    DeadlineError,
    ReplicatorError,
    ServerError,
    ThrottledError,
    UnreachableError,
    may_still_land,
)
from dynamodb_replicator.core.model import Item, ItemKey, RegionSpec
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from . import test_control_path_review_4 as review_4
from .test_control_path_review_4 import (
    FirstPutHeldBack,
    Landings,
    insert_record,
    memory_replicator,
)
from .test_writes import HERE, KEY, TABLE, delete, protocol, put

LIFETIME = 5.0


def _dropped() -> ReplicatorError:
    return UnreachableError("connection dropped after the request was sent", region=HERE)


def _refused() -> ReplicatorError:
    return UnreachableError("connection refused", region=HERE, request_sent=False)


AMBIGUOUS: dict[str, Callable[[], ReplicatorError]] = {
    "dropped": _dropped,
    "server": lambda: ServerError("HTTP 500", region=HERE),
}
REFUSED: dict[str, Callable[[], ReplicatorError]] = {
    "throttled": lambda: ThrottledError("throttled", region=HERE),
    "refused": _refused,
}


class Faulty(MemoryStore):
    """Fails the writes (puts and deletes) numbered in ``faults`` with the error of that
    kind; an ambiguous one is applied ``lands_after[n]`` after its start (by ``landings``),
    the others never. ``starts`` notes every request: (clock, call); ``ambiguous``: (its
    index in ``starts``, its start) for each ambiguous failure. Faults are injected only
    before ``settling`` is set (the batch's ``written``)."""

    def __init__(
        self,
        faults: dict[int, str] | None = None,
        lands_after: dict[int, float] | None = None,
        takes: float = 0.0,
        get_fails: int = 0,
    ) -> None:
        super().__init__(HERE)
        self.takes = takes  # every request answered takes this long (simulated)
        self.get_fails = get_fails  # the first reads of the item table whose answer is lost
        self.landings = Landings(ManualClock())
        self.faults = faults or {}
        self.lands_after = lands_after or {}
        self.writes = 0
        self.settling = False
        self.starts: list[tuple[float, str]] = []
        self.ambiguous: list[tuple[int, float]] = []

    def _fault(self, call: str, apply: Callable[[], object]) -> None:
        now = self.landings.now()
        self.starts.append((now, call))
        self.landings.until(now + self.takes)
        number, self.writes = self.writes, self.writes + 1
        kind = None if self.settling else self.faults.get(number)
        if kind in REFUSED:
            raise REFUSED[kind]()
        if kind in AMBIGUOUS:
            self.ambiguous.append((len(self.starts) - 1, now))
            self.landings.later(now + self.lands_after.get(number, LIFETIME), apply)
            raise AMBIGUOUS[kind]()

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        self._fault("put", lambda: MemoryStore.put(self, table, item, condition))
        return super().put(table, item, condition)

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        self._fault("delete", lambda: MemoryStore.delete(self, table, key, condition))
        return super().delete(table, key, condition)

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        self.starts.append((self.landings.now(), "get"))
        if table == TABLE and self.get_fails > 0:
            self.get_fails -= 1
            raise _dropped()
        return super().get(table, keys)


def _writer(store: Faulty, *, prefetch: bool = False, early: bool = False) -> StoreWriter:
    options = WriterOptions(
        max_in_flight=2,
        backoff=Backoff(attempts=3, base=0.0),
        request_lifetime=LIFETIME,
        written_before_wait=early,
    )
    proto = dataclasses.replace(protocol(store, prefetch=prefetch), clock=store.landings)
    return StoreWriter(proto, options)


def _apply(w: StoreWriter, store: Faulty, ops: list[WriteOp]) -> tuple[int, TargetResult]:
    """Apply ``ops``; how many requests had started when settling began, and the result."""
    store.settling = False
    settled_from: list[int] = []

    def written() -> None:
        store.settling = True
        settled_from.append(len(store.starts))

    result = w.apply(TABLE, ops, written=written)
    return settled_from[0], result


def _content(item: Item | None) -> Item | None:
    """An item without its write's nonce (every write draws its own)."""
    return None if item is None else {k: v for k, v in item.items() if k != "__replicaNonce"}


def _pages_ops(pages: list[list[tuple[str, int]]]) -> list[list[WriteOp]]:
    return [
        [
            put(str(t), seq=str(10 * number + i + 1))
            if kind == "put"
            else delete(str(t), seq=str(10 * number + i + 1))
            for i, (kind, t) in enumerate(page)
        ]
        for number, page in enumerate(pages)
    ]


OPS = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.integers(1, 4)), min_size=1, max_size=4
)


@settings(max_examples=60, deadline=None)
@given(
    pages=st.lists(OPS, min_size=1, max_size=3),
    faults=st.dictionaries(st.integers(0, 8), st.sampled_from([*AMBIGUOUS, *REFUSED])),
    lands=st.dictionaries(st.integers(0, 8), st.floats(0.0, LIFETIME)),
    takes=st.sampled_from([0.0, 1.0]),
)
def test_no_later_request_of_a_key_starts_before_an_ambiguous_write_of_it_may_land(
    pages: list[list[tuple[str, int]]],
    faults: dict[int, str],
    lands: dict[int, float],
    takes: float,
) -> None:
    """Pages of puts and deletes of one key, any of their writes failing: with a lost answer
    (dropped after the send, HTTP 5xx: it lands within the lifetime of its start) or a
    refusal (throttled, connection refused: it never lands); a write may take a second.
    After an ambiguous failure
    started at s, neither its batch's settling (whose reads decide what a late landing
    left) nor any request of a page applied after the batch returned starts before s +
    the lifetime, and the batch does not return before then either (the runner's next
    page starts earlier, on ``written``: ``test_the_next_page_writes_while_...``). (Its
    retry, and the chain's next writes, may: a late first attempt then meets its own
    version or a later one and is refused, or lands on a key a later write of the batch
    deleted, which settling then finds.)"""
    store = Faulty(faults=faults, lands_after=lands, takes=takes)
    w = _writer(store)
    returned: list[tuple[int, float]] = []  # (requests started by then, clock) per batch
    settling: list[int] = []  # per batch: the first request of its settling
    try:
        for ops in _pages_ops(pages):
            for _ in range(6):  # a page that failed is replayed, as the runner does
                settled_from, result = _apply(w, store, ops)
                settling.append(settled_from)
                returned.append((len(store.starts), store.landings.now()))
                if result.failed_sequence is None:
                    break
            else:
                pytest.fail("a page never went through")
    finally:
        w.close()
    # Every late landing happened (each within a lifetime, waited out): the key holds what
    # the same pages leave without faults.
    clean = Faulty()
    plain = _writer(clean)
    try:
        for ops in _pages_ops(pages):
            _apply(plain, clean, ops)
    finally:
        plain.close()
    assert _content(store.item(TABLE, KEY)) == _content(clean.item(TABLE, KEY))
    for index, sent in store.ambiguous:
        after = min(first for first in settling if first > index)
        early = [(t, call) for t, call in store.starts[after:] if t < sent + LIFETIME]
        assert not early, f"started before the write sent at {sent} could land: {early}"
        assert all(t >= sent + LIFETIME for n, t in returned if n > index)


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_write_throttled_or_refused_is_retried_without_waiting_a_lifetime(kind: str) -> None:
    """A throttled request, or one whose connection was refused, surely did not land (nor
    will): its retry goes out at once, no request lifetime waited (the cost of the wait is
    paid only by lost answers)."""
    store = Faulty(faults={0: kind})
    w = _writer(store)
    began = store.landings.now()
    try:
        result = w.apply(TABLE, [put("4")])
    finally:
        w.close()
    # The state this test is about: the first put failed, its retry applied.
    assert [call for _, call in store.starts].count("put") == 2
    assert result.applied == 1 and result.retried == 1
    assert store.landings.now() == began, "a refused write was waited out"


def test_a_write_whose_answer_was_lost_waits_from_its_requests_start_not_from_the_failure() -> None:
    """A delete makes several requests (D1, D2), each taking a second here; when D2's answer
    is lost the wait counts from D2's start (not from the deadline check before D1): its
    retry goes out at once, and the batch returns a lifetime after D2's start."""
    store = Faulty(faults={1: "dropped"}, takes=1.0)  # write 0: D1 (tombstone), write 1: D2
    w = _writer(store)
    try:
        result = w.apply(TABLE, [delete("4")])
        returned = store.landings.now()
    finally:
        w.close()
    _, d2 = store.ambiguous[0]
    assert [call for _, call in store.starts][:2] == ["put", "delete"]
    assert d2 == store.starts[0][0] + 1.0  # the state this test is about
    assert result.failed_sequence is None and result.retried == 1
    assert returned == d2 + LIFETIME


@pytest.mark.parametrize(
    ("exc", "lands"),
    [
        (_dropped(), True),
        (ServerError("HTTP 500"), True),
        (RuntimeError("a bug between send and answer"), True),
        (_refused(), False),
        (ThrottledError("throttled"), False),
        (ConditionFailedError("newer"), False),
        (DeadlineError("no time left"), False),
    ],
)
def test_which_failures_of_a_write_may_still_land(exc: Exception, lands: bool) -> None:
    assert may_still_land(exc) is lands


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), False),
        (ConnectTimeoutError(endpoint_url="http://x"), False),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (ConnectionClosedError(endpoint_url="http://x"), True),
    ],
)
def test_only_a_failure_to_connect_says_the_request_was_not_sent(
    exc: Exception, sent: bool
) -> None:
    translated = translate(exc, HERE, "PutItem")
    assert isinstance(translated, UnreachableError) and translated.request_sent is sent


@pytest.mark.parametrize("role", [False, True], ids=["no-role", "role"])
def test_the_writer_waits_the_settings_request_lifetime(role: bool) -> None:
    """The lifetime comes from the settings' request timeout, twice for a region with a role
    (the STS request a credentials refresh adds inside the call)."""
    spec = RegionSpec(
        "us-east-1",
        "http://localhost:1",
        role=RoleSpec("arn:aws:iam::123456789012:role/r") if role else None,
    )
    settings = ReplicationSettings(request_timeout_seconds=2.0)
    w = build_writer(spec, settings)
    try:
        expected = defaults.request_lifetime(2.0, any_role=role)
        assert w.options.request_lifetime == expected == (4.0 if role else 2.0)
    finally:
        w.close()


def test_a_lambda_invocation_does_not_return_while_a_write_of_its_batch_may_still_land() -> None:
    """The handler returns once every write of the batch ended (``_process_in_time``); a
    put to b whose connection dropped after the send ends only once it can no longer land
    (here it lands a second after its send, within its lifetime), so Lambda's retry of the
    batch, or the next batch's delete, comes after it."""
    clock = ManualClock(1000.0)
    landings = Landings(clock)
    b = FirstPutHeldBack("b", landings, table="Orders")
    stores: dict[str, MemoryStore] = {"a": MemoryStore("a"), "b": b}
    replicator = memory_replicator("a", stores, landings)
    record = insert_record(5)
    record["eventSourceARN"] = "arn:aws:dynamodb:a:1:table/Orders/stream/1"
    try:
        answer = process_event(
            {"Records": [record]},
            replicator,
            metrics_namespace=None,
            deadline=time.time() + 600,
            request_timeout=review_4.REQUEST_TIMEOUT,
        )
    finally:
        replicator.close()
    # The state this test is about: b's first put was dropped after it was sent.
    assert b.dropped and b.sent is not None
    assert answer == {"batchItemFailures": []}
    assert b.held_back is None, "the invocation returned while its dropped put was still out"
    assert clock.t >= b.sent + review_4.REQUEST_TIMEOUT


def test_a_delete_whose_read_after_its_tombstone_lost_its_answer_is_retried_at_once() -> None:
    """In the deleting region a delete reads the item after D1; when that read's answer is
    lost, nothing of the delete is out (D1 answered, a read lands nothing): its retry goes
    out at once."""
    store = Faulty(get_fails=1)
    w = _writer(store)
    began = store.landings.now()
    try:
        result = w.apply(TABLE, [delete("4", deleted_in=HERE)])
    finally:
        w.close()
    # The state this test is about: D1 answered, then the read after it failed.
    assert [call for _, call in store.starts][:3] == ["put", "get", "put"]
    assert result.failed_sequence is None and result.retried == 1
    assert store.landings.now() == began, "a failed read was waited out"


def test_the_next_page_writes_while_a_lost_answer_is_waited_and_settling_finds_it() -> None:
    """The runner starts a page's writes on the page before it saying ``written``
    (runner/pipeline.py). That comes once the writes are done, not after a lost answer's
    lifetime: page 1's put (P1) loses its answer, its retry applies at once, and
    page 2's delete runs then. The lost put lands a lifetime after its start on the deleted
    key; page 1's settling, which does wait for that, finds it and removes it."""
    store = Faulty(faults={0: "dropped"})  # write 0: P1 (an insert: no P1u first)
    w = _writer(store, early=True)  # as the runner builds it
    began = store.landings.now()
    at_written: list[float] = []
    deleted: list[TargetResult] = []

    def written() -> None:  # the runner's next page: a delete of the key
        at_written.append(store.landings.now())
        store.settling = True  # no fault for page 2 or settling
        deleted.append(w.apply(TABLE, [delete("5", seq="2")]))

    try:
        result = w.apply(TABLE, [put("4", seq="1")], written=written)
    finally:
        w.close()
    _, sent = store.ambiguous[0]
    # The state this test is about: page 2 ran while page 1's lost put could still land.
    assert at_written == [began] and began < sent + LIFETIME
    assert deleted[0].applied == 1 and deleted[0].failed_sequence is None
    settling = [t for t, call in store.starts if call == "get"][-1]
    assert settling >= sent + LIFETIME  # page 1's settling came after the lost put's chance
    assert result.failed_sequence is None
    assert store.item(TABLE, KEY) is None  # the late put was removed: the delete holds


def test_outside_the_runner_written_comes_only_after_a_lost_answer_is_waited_out() -> None:
    """The Lambda handler waits for ``written`` without a limit, then for settling only
    until its deadline plus a lifetime: its writers (and the CLI's) say ``written`` after
    the wait, so it never returns while a write of its batch may still land."""
    store = Faulty(faults={0: "dropped"})
    w = _writer(store)
    at_written: list[float] = []
    try:
        result = w.apply(TABLE, [put("4")], written=lambda: at_written.append(store.landings.now()))
    finally:
        w.close()
    _, sent = store.ambiguous[0]  # the state this test is about: the put's answer was lost
    assert result.failed_sequence is None
    assert at_written == [sent + LIFETIME]


def test_only_the_runner_writes_the_next_page_while_a_lost_answer_is_waited_out() -> None:
    """The runner's writers say ``written`` before the wait (its pipeline starts the next
    page's writes then); the Lambda's (and the CLI's, ``build_replicator``'s default) after
    it, as the test above needs."""
    regions = (
        RegionSpec("us-east-1", "http://127.0.0.1:1"),
        RegionSpec(HERE, "http://127.0.0.1:1"),
    )
    config = RunnerConfig(tables=("Soak",), regions=regions)
    runner = Region.connect(regions[0], config, threading.Event(), None).replicator
    lambda_ = build_replicator(regions[0], regions, config.replication)
    try:
        assert isinstance(runner, Replicator)
        for replicator, early in ((runner, True), (lambda_, False)):
            writers = list(replicator.writers.values())
            assert len(writers) == 2
            for w in writers:
                assert isinstance(w, StoreWriter) and w.options.written_before_wait is early
    finally:
        runner.close()
        lambda_.close()
