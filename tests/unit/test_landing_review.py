"""Review of the late-landing fixes (a write whose answer was lost is waited out:
core/landing.py, core/writer.py; the Lambda's deadline: awslambda/handler.py).

The real writer over review 4's doubles: ``Faulty`` (test_writes_that_may_still_land), a
memory store whose numbered writes lose their answer and land later, on ``Landings`` over a
ManualClock (time goes by only while the writer waits or a request "takes" its time);
``SentLate``, a put that goes out late (a transport without a send-by instant) and lands
after it; ``SettlingDropped``, a settling P3 that lands during settling's retry."""

from __future__ import annotations

import dataclasses

from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.aws.lean import LeanClient
from dynamodb_replicator.awslambda.handler import deadline_of
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.model import Item, ItemKey, RegionSpec
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .test_control_path_review_4 import Landings
from .test_writes import KEY, TABLE, delete, protocol, put
from .test_writes_that_may_still_land import LIFETIME, Faulty, _dropped, _writer


def test_a_lambda_batch_whose_delete_began_before_the_deadline_ends_before_the_invocation() -> None:
    """The handler returns once the batch's writes ended (``written``: every chain, its
    waits included) and starts no write after ``deadline_of``, which keeps one request
    lifetime (and the margin) before the invocation's end. Here 20 s are left (margin 2 s,
    lifetime 5 s: the deadline is 13 s in); a chain of puts answers in 4.2 s each, the
    delete's check passes at 12.6 s, its D1 answers at 16.8 s, and D2's answer is lost: it
    is waited out until 21.8 s, after the invocation timed out (Lambda then retries the
    batch, the handler never answers it)."""
    store = Faulty(faults={4: "dropped"}, takes=4.2)  # writes 0-2: puts, 3: D1, 4: D2
    w = _writer(store)
    start = store.landings.now()
    left = 20.0
    op_deadline = deadline_of(_Remaining(left), start, LIFETIME)
    assert op_deadline == start + 13.0
    ended: list[float] = []
    chains: list[int] = []  # how many requests the chains made (settling's come after)

    def written() -> None:
        store.settling = True
        ended.append(store.landings.now())
        chains.append(len(store.starts))

    ops: list[WriteOp] = [put(t, seq=t) for t in ("1", "2", "3")]
    ops.append(delete("4", seq="4"))
    try:
        w.apply(TABLE, ops, deadline=op_deadline, written=written)
    finally:
        w.close()
    # The state this test is about: the delete's check passed before the deadline and
    # its D1 answered after it, when D2 was due (each write request is held to the
    # deadline: D2 is left for the retry, as a crash between them would leave it).
    assert [call for _, call in store.starts][:4] == ["put"] * 4
    assert store.starts[3][0] < op_deadline < store.starts[3][0] + 4.2
    writes = [(when, call) for when, call in store.starts[: chains[0]] if call != "get"]
    late = [(when, call) for when, call in writes if when >= op_deadline]
    assert not late, f"writes started after the deadline ({op_deadline}): {late}"
    assert ended and ended[0] <= start + left, (
        f"the writes ended {ended[0] - start:g} s into a {left:g} s invocation"
    )


class _Remaining:
    """A Lambda context with ``seconds`` left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


# The CLI's writers (repair, join-copy and backfill, redrive) are built by ``build_writer``
# with its default client maker: botocore, which has no send-by instant (guarantees,
# "Timing and clocks": each address gets the whole connect timeout, TLS another, the name's
# resolution and a credentials refresh no bound). They run beside the runner, without a
# lease: a put of theirs that went out late and lost its answer is waited out from its
# call's start, and may land after that wait, after its own settling.
CONNECT = LIFETIME * defaults.REQUEST_CONNECT_SHARE
READ = LIFETIME - CONNECT
BOTOCORE_SENT_LATE = 3.0  # botocore: the resolution and two addresses' connects first


def _cli_writer_sends_by() -> float:
    """The latest a request of a writer built as the CLI builds it goes out after its
    call's start: the connect timeout on the lean transport (its send-by instant); on
    botocore no bound (modelled by ``BOTOCORE_SENT_LATE``)."""
    w = build_writer(RegionSpec("us-east-1", "http://localhost:1"), ReplicationSettings())
    try:
        lean = isinstance(getattr(w.protocol.store, "client", None), LeanClient)
    finally:
        w.close()
    return CONNECT if lean else BOTOCORE_SENT_LATE


class SentLate(MemoryStore):
    """The first put of ``TABLE`` goes out ``late`` after its call started, loses its
    answer at once (the connection dropped after the send) and is applied a read timeout
    after it went out."""

    def __init__(self, landings: Landings, late: float) -> None:
        super().__init__("eu-west-1")
        self.landings = landings
        self.late = late
        self.sent: float | None = None

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        if table == TABLE and self.sent is None:
            self.sent = self.landings.now() + self.late
            self.landings.until(self.sent)
            land = lambda: MemoryStore.put(self, table, item, condition)  # noqa: E731
            self.landings.later(self.sent + READ, land)
            raise _dropped()
        return super().put(table, item, condition)


def _memory_writer(store: MemoryStore, landings: Landings) -> StoreWriter:
    options = WriterOptions(backoff=Backoff(attempts=3, base=0.0), request_lifetime=LIFETIME)
    proto = protocol(store, prefetch=False)
    return StoreWriter(dataclasses.replace(proto, clock=landings), options)


def test_a_repair_put_sent_late_whose_answer_was_lost_cannot_land_after_a_later_delete() -> None:
    """A repair put of version 4 goes out as late as the transport of the writers the CLI
    builds lets it (botocore: 3 s after its call started, after the resolution and two
    addresses; the lean transport: by the connect timeout) and loses its answer; its writer
    waits a lifetime from the call's start, retries (applied) and settles (no tombstone).
    The runner then replicates a delete of version 5: D1, D2 remove the item. The first
    attempt, applied a read timeout after it went out, then lands on the absent item: the
    delete is undone, and no writer settles it (the repair's settling came before)."""
    landings = Landings(ManualClock())
    late = _cli_writer_sends_by()
    store = SentLate(landings, late)
    repair, runner = _memory_writer(store, landings), _memory_writer(store, landings)
    try:
        began = landings.now()
        assert repair.apply(TABLE, [put("4")]).applied == 1
        assert runner.apply(TABLE, [delete("5")]).applied == 1
        # The state this test is about: the first attempt went out as late as the CLI's
        # transport lets it, its wait ended, then the delete removed the item.
        assert store.sent == began + late
        assert store.get(TABLE, [KEY]) == {}
        landings.until(store.sent + READ)
    finally:
        repair.close()
        runner.close()
    assert store.get(TABLE, [KEY]) == {}, "the repair's first put landed after the delete"


def test_the_writers_the_cli_builds_send_by_a_send_by_instant() -> None:
    """``cli.repair`` and ``cli.join_copy`` build their writers with ``build_writer(spec,
    settings)``; the send-by instant is the lean transport's (``aws.http``)."""
    spec = RegionSpec("us-east-1", "http://localhost:1")
    w = build_writer(spec, ReplicationSettings())
    try:
        store = w.protocol.store
        assert isinstance(getattr(store, "client", None), LeanClient)
    finally:
        w.close()


class SettlingDropped(MemoryStore):
    """Once ``armed``, the first delete of ``TABLE`` (settling's P3) loses its answer and
    is applied half a second after it went out; every later delete of ``TABLE`` takes a
    second on its way (the first one lands meanwhile)."""

    def __init__(self, landings: Landings) -> None:
        super().__init__("eu-west-1")
        self.landings = landings
        self.armed = False
        self.dropped = False

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        if table == TABLE and self.armed and not self.dropped:
            self.dropped = True
            land = lambda: MemoryStore.delete(self, table, key, condition)  # noqa: E731
            self.landings.later(self.landings.now() + 0.5, land)
            raise _dropped()
        if table == TABLE and self.dropped:
            self.landings.until(self.landings.now() + 1.0)
        return super().delete(table, key, condition)


def test_a_put_undone_by_settlings_late_landing_delete_is_reported_taken_back() -> None:
    """A put of 4 lands after a delete of 5 (P0 off: a late delivery); settling's P3 loses
    its answer, and settling is retried at once (P3 is not waited out: by design, it removes
    nothing newer). The retry reads the item still there, and its own P3 finds it gone: the
    first P3 landed in between. The item is removed as it should be, but the put counts as
    applied, not stale (as it does when P3 answers: checked), in the counts and in
    ``settled``; were the delete another region's, its conflict would not be logged."""
    landings = Landings(ManualClock())
    store = SettlingDropped(landings)
    w = _memory_writer(store, landings)
    try:
        w.apply(TABLE, [delete("5")])
        store.armed = True
        result = w.apply(TABLE, [put("4", seq="3")])
    finally:
        w.close()
    # The state this test is about: settling's first P3 was dropped and landed late; the
    # put it settled is gone.
    assert store.dropped and not landings.due
    assert store.get(TABLE, [KEY]) == {}
    assert (result.applied, result.stale) == (0, 1)
    assert result.settled == {"3": False}
