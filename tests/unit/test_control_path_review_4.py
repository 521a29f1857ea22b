"""Adversarial review 4 of the whole control path (issue #23): the defects found, each
pinned as a strict expected failure until fixed. The real lease keeper (and Runner where it matters)
over the in-memory state table (testing/memory_leases.py, the conditions of
aws/state_*.py) and a ManualClock; the real writer over the in-memory store; the lean
transport's connect over loopback sockets. Every request lands within the request timeout
of its send (docs/concepts/guarantees.md, "Timing and clocks"), whatever its client saw."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.errors import ThrottledError, UnreachableError
from dynamodb_replicator.core.model import Item, RegionSpec
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.ports import TargetWriter
from dynamodb_replicator.core.replicator import Replicator
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.core.streams import Page, Shard, ShardRef
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.claims import ms
from dynamodb_replicator.runner.leases import LeaseKeeper
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_leases import LeaseTable, MemoryStateStore
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS
from .test_control_path_review_3 import ThrottledReleases
from .test_runner_outage import CONFIG, NAMES, NoParking
from .test_writes import HERE, KEY, TABLE, delete, protocol, put

LEASE = 30.0
STEP = 3600.0  # the wall clock an hour ahead, then set back (NTP)
SHARD = ShardRef("T", "arn:a/stream/T", "s-0")


def _ahead_then_set_back(*, left: bool) -> tuple[ManualClock, LeaseTable, LeaseKeeper]:
    """w1 holds SHARD with its wall clock an hour ahead; the shard is dropped (a balancing
    hand-over, a reload) with its lease stored an hour ahead: ``left`` - its page is still
    out at the deadline, so the lease is left to expire (held.py: ``forget`` then
    ``leave``); else its release is throttled on every quick retry ("lease not released",
    ``_gone``). NTP then sets the clock back, and the keeper ticks three more times."""
    clock = ManualClock(1000.0 + STEP)
    table = LeaseTable(clock)
    store = ThrottledReleases(table)
    keeper = LeaseKeeper("w1", "p", clock, LEASE)
    keeper.stores = {"a": store}
    keeper.claim("a", threading.Event())
    lease = keeper.acquire("a", SHARD)
    assert lease is not None
    clock.t += keeper.tick
    keeper.renew_all()
    keeper.forget(SHARD)
    if left:
        keeper.leave(SHARD, lease)
    else:
        store.throttling = True
        with pytest.raises(ThrottledError):
            keeper.release(SHARD, "a")
    # The state these tests are about: the table holds the lease an hour ahead.
    assert table.leases[SHARD].expires_ms > ms(1000.0 + STEP)
    clock.t = 1010.0  # set back
    for _ in range(3):  # the two ticks the docs give, and one more
        keeper.renew_all()
        clock.t += keeper.tick
    return clock, table, keeper


@pytest.mark.parametrize("left", [True, False], ids=["left_to_expire", "release_throttled"])
def test_a_dropped_lease_stored_under_a_clock_ahead_is_free_a_lease_after_the_clock_came_back(
    left: bool,
) -> None:
    """Interleaving: w1's wall clock runs an hour ahead; it renews SHARD's lease (stored
    an hour ahead), then drops the shard: its page outlived the deadline (left to expire)
    or its release was throttled four times. NTP sets the clock back; the keeper ticks
    twice more and w1 dies. The guarantees (Timing and clocks): once the clock is set back
    "what it stored that far ahead comes down ... A process that dies after that frees its
    shards, and its worker id, a lease after its last tick, not after the whole step".
    Found: the keeper lowered only the leases it still renewed (``_renew_region`` walks
    ``leases``), so a dropped one stayed an hour ahead, and the claim with it (never below
    a lease the table may hold): nobody took the shard, nor the worker id, for an hour; w1
    itself would not take it again either (``_still_left`` on its own stepped clock).
    Fixed: each tick brings the dropped ones down too (``_settle_dropped``)."""
    clock, table, _keeper = _ahead_then_set_back(left=left)
    last_tick = clock.t
    clock.t = last_tick + LEASE + 0.001  # w1 died at its last tick; a lease later
    other = MemoryStateStore(table, name="w2")
    taken = other.acquire(SHARD, "w2", ms(clock.t), ms(LEASE))
    pinned = table.leases[SHARD].expires_ms / 1000 - clock.t
    assert taken, f"the shard is pinned {pinned:.0f} s after its holder died"
    try:
        other.heartbeat(
            "w1", ms(clock.t + LEASE), instance="elsewhere", now_ms=ms(clock.t), order=1
        )
    except WorkerIdInUseError as held:
        pytest.fail(f"the worker id is pinned {held.expires_ms / 1000 - clock.t:.0f} s")


CONNECT, READ = 0.2, 0.2  # a request timeout of 0.4 s, split as aws/clients.py splits it


def _silent_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A port whose accept queue is full: a connect to it times out (its SYN is dropped),
    as one to an address without a route does (an AAAA record on an IPv4-only network)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # its handshake completes unaccepted
            filler.connect(server.getsockname())
        fillers.append(filler)
    return server, fillers


@pytest.fixture
def arrivals() -> Iterator[tuple[int, list[float]]]:
    """A server that takes one request and notes when the whole of it arrived (when
    DynamoDB would apply it), on the monotonic clock; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(5.0)
    seen: list[float] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            seen.append(time.monotonic())
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    server.close()
    thread.join(5.0)


def test_a_write_reaches_the_table_within_the_request_timeout_when_the_endpoint_has_dead_addresses(
    monkeypatch: pytest.MonkeyPatch, arrivals: tuple[int, list[float]]
) -> None:
    """Fencing by time rests on "every request to DynamoDB ends within
    request_timeout_seconds (botocore's connect and read timeouts, one attempt)": a write
    whose deadline check passed reaches the table within one request timeout, shorter than
    the margin. The lean transport's connect (``socket.create_connection``, as urllib3's
    under botocore) tries each address the endpoint's name resolves to, each for the
    whole connect timeout: with a name that resolves to addresses that do not answer
    first (an IPv6 address without a route, a dead load-balancer node), the request is
    sent after several connect timeouts and still has the whole read timeout to reach the
    server. Interleaving (lease 30 s, margin 7.5 s, ``request_timeout_seconds = 7``,
    accepted: connect 0.7 s, read 6.3 s): the deadline check passes at expiry - 7.5 s;
    two dead addresses cost 1.4 s, the body goes out by 6.3 s later: the put lands 0.2 s
    after the lease expired, when another worker may have taken the shard and settled
    the record. Here: three silent addresses, then the server; the time the request
    arrives is measured from the call (a lower bound: each silent address costs at least
    its timeout)."""
    port, seen = arrivals
    silent = [_silent_listener() for _ in range(3)]
    addresses = [s.getsockname() for s, _ in silent] + [("127.0.0.1", port)]

    def resolve(host: object, port_: object, *args: object, **kwargs: object) -> list[object]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
            for address in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    pool = Pool("http://dynamodb.test:80", maxsize=1, connect_timeout=CONNECT, read_timeout=READ)
    began = time.monotonic()
    try:
        pool.post(b"{}", {"Host": "dynamodb.test"})
    except Exception:  # a transport that gives up in time sends nothing: no arrival
        pass
    finally:
        pool.close()
        for server, fillers in silent:
            for filler in fillers:
                filler.close()
            server.close()
    # The state this test is about: the endpoint's first addresses did not answer.
    assert time.monotonic() - began >= 3 * CONNECT or not seen
    late = [arrived - began for arrived in seen if arrived - began > CONNECT + READ]
    assert not late, f"the write reached the table {late[0]:.2f} s after its call began"


REQUEST_TIMEOUT = 5.0  # the default for the 30 s lease (margin 7.5 s)
LANDS_AFTER = 1.0  # a dropped put lands this long after its send: within its request timeout


@dataclass
class Landings:
    """The write protocol's clock over ``base`` (the test's ManualClock): time goes by only
    while a writer waits on it (the simulated waiter's time passes) or the test moves it;
    on its way it lands every held-back request whose time came."""

    base: ManualClock
    due: list[tuple[float, Callable[[], object]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return self.base.t

    def elapsed(self) -> float:
        return self.base.t

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.until(self.base.t + seconds)
        return stop is not None and stop.is_set()

    def later(self, when: float, land: Callable[[], object]) -> None:
        """Land a request at ``when``."""
        with self.lock:
            self.due.append((when, land))

    def until(self, t: float) -> None:
        """Move the clock to ``t`` (never back), landing what is due by then."""
        with self.lock:
            self.base.t = max(self.base.t, t)
            ready = [land for when, land in self.due if when <= self.base.t]
            self.due = [(when, land) for when, land in self.due if when > self.base.t]
        for land in ready:
            land()


class FirstPutHeldBack(MemoryStore):
    """A target whose first put of ``TABLE`` loses its connection after the request went
    out (the writer sees UnreachableError); the table applies it, with the condition it was
    sent with, ``LANDS_AFTER`` its send (by the clock ``landings``), or when ``land`` is
    called, whichever comes first. ``landed`` is called with the outcome."""

    def __init__(
        self,
        region: str,
        landings: Landings,
        table: str = TABLE,
        landed: Callable[[StoreResult], None] | None = None,
    ) -> None:
        super().__init__(region)
        self.landings = landings
        self.dropped_table = table
        self.landed = landed
        self.held_back: tuple[str, Item, Condition] | None = None
        self.dropped = False
        self.sent: float | None = None
        self.hold = threading.Lock()

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        if table == self.dropped_table and not self.dropped:
            self.dropped, self.sent = True, self.landings.now()
            self.held_back = (table, item, condition)
            self.landings.later(self.sent + LANDS_AFTER, self.land)
            raise UnreachableError("connection dropped after the request was sent", region=HERE)
        return super().put(table, item, condition)

    def land(self) -> None:
        with self.hold:
            held, self.held_back = self.held_back, None
        if held is None:
            return  # landed already
        result = super().put(*held)
        if self.landed is not None:
            self.landed(result)


def insert_record(seq: int, timestamp: str = "4") -> dict[str, Any]:
    """Region a's stream record of an application insert of key k (the runner's form)."""
    image = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": timestamp}}
    return {
        "eventName": "INSERT",
        "eventSourceARN": "arn:a/stream/Orders",
        "dynamodb": {
            "Keys": {"pk": {"S": "k"}},
            "NewImage": image,
            "SequenceNumber": f"{seq:021d}",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


@dataclass
class OneRecordStreams:
    """Region ``region``'s stream: one shard, whose first read returns one record."""

    region: str
    read_once: bool = False

    def stream_arns(self, table: str) -> list[str]:
        return [f"arn:{self.region}/stream/{table}"]

    def shards(self, arn: str) -> list[Shard]:
        return [Shard(f"{self.region}-0", None, "1", None)]

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        return "it"

    def read(self, iterator: str, limit: int = 1000) -> Page:
        if self.region != "a" or self.read_once:
            return Page([], iterator)
        self.read_once = True
        return Page([insert_record(5)], iterator)


def memory_replicator(
    source: str, stores: Mapping[str, MemoryStore], clock: Landings
) -> Replicator:
    """The real Replicator and StoreWriters of ``source``'s stream over ``stores``, each
    write's requests bounded by ``REQUEST_TIMEOUT``."""
    options = WriterOptions(backoff=Backoff(base=0.0), request_lifetime=REQUEST_TIMEOUT)
    policy = LastWriterWins(FIELDS)
    writers: dict[str, TargetWriter] = {
        name: StoreWriter(
            WriteProtocol(store, policy, FIELDS, clock, ".__tombstones", 3600, prefetch=False),
            options,
        )
        for name, store in stores.items()
    }
    reader = TombstoneTable(stores[source], FIELDS, ".__tombstones")
    return Replicator(
        source=source, writers=writers, tombstones=reader, policy=policy, fields=FIELDS
    )


def test_a_dropped_write_does_not_land_after_the_released_shard_was_taken() -> None:
    """Interleaving: worker w's shard a-0 writes record 5 (an insert) to b through the real
    Replicator and StoreWriter; the connection drops after b's put went out (the table
    applies it ``LANDS_AFTER`` its send: assumption (1) bounds when a write lands, not what
    its client saw). w hands the shard over (a balancing hand-over, a reload, a clean
    stop: ``Held.drop``) once the page ended: the lease is released at once and w2 takes the
    shard, then the dropped put would land: the write of issue #23 again (w2 replays record
    5, settles it and moves on, a delete of it follows, and the late put brings the item
    back with nobody left to settle it). The writer waits a put that may still land out
    (its request's start plus the request lifetime) before it retries it or ends the page,
    so the put lands before the hand-over."""
    clock = ManualClock(1000.0)
    tables = {n: LeaseTable(clock) for n in NAMES}
    landings = Landings(clock)

    def landed(_result: StoreResult) -> None:
        tables["a"].note("write", ref, "w")

    b = FirstPutHeldBack("b", landings, table="Orders", landed=landed)
    stores: dict[str, MemoryStore] = {"a": MemoryStore("a"), "b": b, "c": MemoryStore("c")}
    replicators = {n: memory_replicator(n, stores, landings) for n in NAMES}
    regions = {
        n: Region(
            RegionSpec(n),
            OneRecordStreams(n),
            MemoryStateStore(tables[n], name="w"),
            replicators[n],
            NoParking(),
        )
        for n in NAMES
    }
    runner = Runner(CONFIG, worker_id="w", clock=clock, connect=lambda s, *_: regions[s.name])
    runner.regions = regions
    try:
        runner.balance()
        ref = next(r for r, o in runner.owned.items() if o.region == "a")
        owned = runner.owned[ref]
        assert _poll(lambda: b.dropped)
        assert _poll(lambda: stores["b"].item("Orders", KEY) is not None)  # put, or retried
        clock.t += 0.1
        runner._drop(ref, release=True)
    finally:
        runner.stopping.set()
        for kept in runner.owned.values():
            kept.stop.set()
        for replicator in replicators.values():
            replicator.close()
    # The state this test is about: the shard was handed over, its page ended, and b's
    # first put was dropped after it was sent.
    assert ref not in runner.owned and not owned.thread.is_alive()
    assert b.sent is not None
    other = MemoryStateStore(tables["a"], name="w2")
    taken = other.acquire(ref, "w2", ms(clock.t), ms(LEASE))
    landings.until(b.sent + LANDS_AFTER)  # the dropped put lands, within its request timeout
    events = [(event, who) for _, event, shard, who in tables["a"].timeline if shard == ref]
    taken_at = events.index(("acquire", "w2")) if taken else len(events)
    late = [event for event in events[taken_at:] if event == ("write", "w")]
    assert not late, f"w's put landed after w2 acquired the shard: {events}"


def _poll(done: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``done`` until it holds or ``seconds`` (real time) went by."""
    end = time.monotonic() + seconds
    while not done():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def test_a_put_whose_connection_dropped_does_not_bring_back_a_later_delete() -> None:
    """Interleaving, one worker, no hand-over: the put of version 4 (record 1) loses its
    connection after the request went out; were it retried at once (applied) and settled,
    the page's checkpoint would pass record 1, the next page would delete version 4
    (tombstone written, item deleted), and then the first attempt would land within its
    request timeout of its send: its condition, built before the delete, passes on the
    absent key, and the item is back in this region for good. The writer waits the
    first attempt out (its send plus the request lifetime) before it retries it, so the
    retry's settling read comes after it landed. The Guarantees: "A write applied whose
    answer was lost still settles when it is retried or replayed", and no checkpoint
    passes an unsettled write."""
    landings = Landings(ManualClock(100.0))
    store = FirstPutHeldBack(HERE, landings)
    options = WriterOptions(
        max_in_flight=2, backoff=Backoff(base=0.0), request_lifetime=REQUEST_TIMEOUT
    )
    w = StoreWriter(dataclasses.replace(protocol(store, prefetch=False), clock=landings), options)
    try:
        first = w.apply(TABLE, [put("4", seq="1")])
        # The state this test is about: the first attempt was dropped after it was sent.
        assert store.dropped and store.sent is not None
        second = w.apply(TABLE, [delete("4", seq="2")])
        assert second.failed_sequence is None
        assert store.item(TABLE, KEY) is None
        landings.until(store.sent + LANDS_AFTER)  # the first attempt lands by now at last
    finally:
        w.close()
    # A checkpoint may pass record 1 only if nothing of it can land unsettled any more.
    passed = first.failed_sequence is None
    assert not passed or store.item(TABLE, KEY) is None, "the delete of version 4 was undone"
