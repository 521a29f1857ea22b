"""Adversarial review of h-cpu4's CPU cuts in the lean transport (``git diff de0fb10
2abe7b2``): plain connections blocking with SO_RCVTIMEO/SO_SNDTIMEO, the send under one
deadline, SigV4's cached pad states, canonical headers and X-Amz-Date, and P1u's template.

Each test pins one guarantee of docs/concepts/guarantees.md ("Timing and clocks") or the
signature/condition equivalences. One defect was reproduced and is fixed by going back to
sockets with a timeout (main de0fb10's ``aws/http.py``): with SO_RCVTIMEO every signal gave
an interrupted read its whole timeout again
(``test_a_stalled_answer_times_out_within_the_read_timeout_while_signals_arrive``).
"""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import ReadTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.lean import LeanClient
from dynamodb_replicator.aws.sigv4 import _MAX_SHAPES, Signer, amz_date
from dynamodb_replicator.cli.run import YOUNG_COLLECTION_THRESHOLD, tune_collector
from dynamodb_replicator.core.conditions import Bound, Exists, Path, all_of, render
from dynamodb_replicator.core.model import Version
from dynamodb_replicator.core.policy import LastWriterWins, PreferredRegion

from .strategies import FIELDS, regions, stored_items, versions
from .test_lean_http import ANSWER, RawServer, Serve, read_request, serving  # noqa: F401
from .test_sigv4 import HEADERS, botocore_headers

# --- aws.http: blocking sockets timed out by the kernel ------------------------------------


def test_a_stalled_answer_times_out_within_the_read_timeout_while_signals_arrive(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """A server reads the request and never answers while the process gets a signal every
    0.1 s (a timer, a profiler's SIGPROF, children's SIGCHLD): the call must still raise
    ReadTimeoutError after about its 0.5 s read timeout (the timeout socket did: its
    retries after EINTR keep one deadline). Concrete case: with SO_RCVTIMEO on a blocking
    socket every SIGALRM restarts the kernel's 0.5 s, and the read only times out once the
    40 signals (4 s) stop: 40 ticks instead of about 5."""
    arrived = threading.Event()

    def silent(conn: socket.socket) -> None:
        if read_request(conn):
            arrived.set()
            with contextlib.suppress(OSError):
                conn.recv(1)  # until the client gives up (its reset)

    client = Pool(serving(silent).url, maxsize=1, connect_timeout=1.0, read_timeout=0.5)
    ticks: list[float] = []

    def tick(signum: int, frame: Any) -> None:
        ticks.append(time.monotonic())
        if len(ticks) >= 40:  # bounded: the defect's read ends once the signals stop
            signal.setitimer(signal.ITIMER_REAL, 0)

    previous = signal.signal(signal.SIGALRM, tick)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
        with pytest.raises(ReadTimeoutError):
            client.post(b"{}", {"Host": "h"})
        ticks_before_giving_up = len(ticks)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert arrived.is_set()  # the state: the request arrived and was never answered
    assert ticks  # signals did arrive during the wait
    assert ticks_before_giving_up < 20  # about 5 for a 0.5 s read timeout


def test_a_send_to_a_peer_that_trickles_gives_up_within_the_read_timeout_and_resets(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """A peer that accepts and reads 4 KiB every 20 ms: the first write of a 16 MiB
    request blocks (SO_SNDTIMEO) and the rest trickles. The whole send has one read
    timeout (ReadTimeoutError within about 0.5 s, not 0.5 s per write), and the connection
    is reset: the peer sees the reset, never the whole request."""
    received: list[int] = []
    reset = threading.Event()
    pace = threading.Event()  # never set: a pacing wait, not a wait for a condition

    def trickle(conn: socket.socket) -> None:
        total = 0
        try:
            while chunk := conn.recv(4096):
                total += len(chunk)
                received.append(total)
                pace.wait(0.02)
        except ConnectionResetError:
            reset.set()

    body = b"x" * (16 << 20)
    client = Pool(serving(trickle).url, maxsize=1, connect_timeout=1.0, read_timeout=0.5)
    began = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.post(body, {"Host": "h"})
    waited = time.monotonic() - began
    assert received  # the state: the peer was reading, slowly
    assert 0.45 <= waited < 3.0  # one deadline for the send, not one per write
    deadline = time.monotonic() + 10
    while not reset.is_set() and time.monotonic() < deadline:
        reset.wait(0.05)
    assert reset.is_set()
    assert received[-1] < len(body)


def test_a_half_answer_that_times_out_leaves_no_bytes_for_the_next_request(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """The first connection's server sends half an answer, stalls past the read timeout,
    then sends the rest: the call raises ReadTimeoutError, and the next request (a kept
    connection is not reused) gets its own answer, never the stale half."""
    stalled = threading.Event()
    second = b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"second":1}'
    half = ANSWER[: len(ANSWER) // 2]

    def serve(conn: socket.socket) -> None:
        if not stalled.is_set():
            if read_request(conn):
                conn.sendall(half)
                stalled.set()
                with contextlib.suppress(OSError):
                    conn.recv(1)  # until the client gives up
                    conn.sendall(ANSWER[len(half) :] + ANSWER)
            return
        while read_request(conn):
            conn.sendall(second)

    server = serving(serve)
    client = Pool(server.url, maxsize=4, connect_timeout=1.0, read_timeout=0.3)
    with pytest.raises(ReadTimeoutError):
        client.post(b"{}", {"Host": "h"})
    assert stalled.is_set()
    assert not client._idle
    assert client.post(b"{}", {"Host": "h"}).data == b'{"second":1}'
    assert server.connections == 2


# --- SigV4: cached date, canonical headers, pad states -------------------------------------


class _Clock:
    def __init__(self, times: list[float]) -> None:
        self.times = times

    def now(self) -> float:
        return self.times.pop(0)

    def elapsed(self) -> float:  # pragma: no cover - the Clock port; unused here
        return time.monotonic()


class _Rotating:
    """Credentials refreshed on every read (a new secret, token, access key)."""

    def __init__(self, frozen: list[ReadOnlyCredentials]) -> None:
        self.frozen = frozen
        self.used: list[ReadOnlyCredentials] = []

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.used.append(self.frozen.pop(0))
        return self.used[-1]


def _lean(clock: _Clock, credentials: Any) -> LeanClient:
    client = boto3.session.Session().client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"total_max_attempts": 1}),
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    return LeanClient(client, credentials, clock)  # type: ignore[arg-type]


def test_each_request_is_signed_at_its_own_second_across_boundaries_and_refreshes() -> None:
    """X-Amz-Date formatted once a second: a request at .999, the next at .000, the clock
    stepping back a second, credentials refreshed within one second (secret, access key
    and token each changing, a token dropped): each signature is SigV4Auth's for that
    request's own second and credentials."""
    midnight = 1764806400.0  # 2025-12-04T00:00:00Z: the day (and signing key) changes too
    times = [midnight - 1.0, midnight - 0.001, midnight, midnight - 0.5, midnight + 0.2,
             midnight + 1.5, midnight + 1.999, midnight + 2.0]  # fmt: skip
    frozen = [
        ReadOnlyCredentials("A1", "s1", "t1"),
        ReadOnlyCredentials("A1", "s1", "t2"),
        ReadOnlyCredentials("A2", "s2", "t2"),
        ReadOnlyCredentials("A2", "s2", None),
        ReadOnlyCredentials("A2", "s3", "t3"),
        ReadOnlyCredentials("A3", "s3", "t3"),
        ReadOnlyCredentials("A3", "s3", "t3"),
        ReadOnlyCredentials("A3", "s4", "t4"),
    ]
    lean = _lean(_Clock(list(times)), _Rotating(list(frozen)))
    try:
        body = b'{"TableName": "T"}'
        for when, creds in zip(times, frozen, strict=True):
            ours = lean._signature(dict(HEADERS), body)
            stamp = amz_date(when)
            assert ours["X-Amz-Date"] == stamp
            want = botocore_headers(
                "http://127.0.0.1:9/",
                body,
                Credentials(creds.access_key, creds.secret_key, creds.token),
                "eu-west-1",
                stamp,
            )
            assert ours == want
    finally:
        lean.close()


def test_signers_of_two_regions_and_services_share_no_cached_state() -> None:
    """Interleaved signers (regions, services, hosts) sign as fresh ones would."""
    specs = [
        ("dynamodb", "eu-west-1", "dynamodb.eu-west-1.amazonaws.com"),
        ("dynamodb", "us-east-1", "dynamodb.us-east-1.amazonaws.com"),
        ("dynamodb", "us-east-1", "streams.dynamodb.us-east-1.amazonaws.com"),
    ]
    used = [Signer(*spec) for spec in specs]
    for round_ in range(3):
        for spec, signer in zip(specs, used, strict=True):
            token = None if round_ == 1 else f"tok{round_}"
            ours = signer.sign(
                HEADERS,
                b"{}",
                access_key="A",
                secret_key="s",
                token=token,
                stamp="20261203T095959Z",
            )
            fresh = Signer(*spec).sign(
                HEADERS,
                b"{}",
                access_key="A",
                secret_key="s",
                token=token,
                stamp="20261203T095959Z",
            )
            assert ours == fresh


def test_more_header_sets_than_the_cache_holds_sign_as_sigv4auth_under_threads() -> None:
    """Four threads sign 3 x 64 distinct header sets (the cache clears at 64, under
    their feet), with and without tokens: every signature equals SigV4Auth's."""
    signer = Signer("dynamodb", "eu-west-1", "127.0.0.1:8000")
    stamp = "20261203T095959Z"
    wrong: list[str] = []
    start = threading.Barrier(4)
    shapes: set[tuple[str, bool]] = set()

    def work(worker: int) -> None:
        start.wait()
        for i in range(3 * _MAX_SHAPES):
            headers = {**HEADERS, "X-Amz-Target": f"DynamoDB_20120810.Op{(i * 7 + worker) % 200}"}
            token = None if (i + worker) % 3 == 0 else f"t{worker}{i}"
            body = f'{{"i": {i}}}'.encode()
            shapes.add((headers["X-Amz-Target"], token is None))
            ours = signer.sign(
                headers, body, access_key="AK", secret_key="sk", token=token, stamp=stamp
            )
            want = botocore_headers(
                "http://127.0.0.1:8000/",
                body,
                Credentials("AK", "sk", token),
                "eu-west-1",
                stamp,
                headers,
            )
            if ours != want:
                wrong.append(headers["X-Amz-Target"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(shapes) > 2 * _MAX_SHAPES  # the state: the cache started over, more than once
    assert len(signer._shapes) <= _MAX_SHAPES
    assert wrong == []


@settings(max_examples=30, deadline=None)
@given(
    extra=st.dictionaries(
        st.sampled_from(["X-Amz-Security-Token", "x-amz-date", "A-First", "Zeta", "X-Amz-S"]),
        st.text("ab c", min_size=1, max_size=6).filter(str.strip),
        max_size=3,
    ),
    token=st.none() | st.just("tok"),
)
def test_headers_around_the_date_and_token_sign_as_sigv4auth(
    extra: dict[str, str], token: str | None
) -> None:
    """Headers sorting before, between and after x-amz-date and x-amz-security-token (and
    those two names among the operation's own headers): the cached canonical form is
    SigV4Auth's."""
    headers = {**HEADERS, **extra}
    signer = Signer("dynamodb", "eu-west-1", "127.0.0.1:8000")
    stamp = "20261203T100000Z"
    for _ in range(2):
        ours = signer.sign(
            headers, b"{}", access_key="AK", secret_key="sk", token=token, stamp=stamp
        )
    request_headers = {k: v for k, v in headers.items() if k.lower() != "x-amz-date"}
    if token:
        request_headers = {
            k: v for k, v in request_headers.items() if k.lower() != "x-amz-security-token"
        }
    want = botocore_headers(
        "http://127.0.0.1:8000/",
        b"{}",
        Credentials("AK", "sk", token),
        "eu-west-1",
        stamp,
        request_headers,
    )
    assert ours == want


# --- P1u: the Exists before the policy's template -------------------------------------------


@given(
    st.sampled_from([LastWriterWins(FIELDS), PreferredRegion("eu-west-1", FIELDS)]),
    versions(),
    regions,
    st.booleans(),
    st.sampled_from(["pk", "id"]),
    stored_items(),
)
def test_p1us_template_renders_and_evaluates_as_the_reference_tree(
    policy: Any, incoming: Version, holder: str, strict: bool, key: str, item: Any
) -> None:
    """``Template.after``: bound to the write's values it is ``all_of(Exists(key), rule)``,
    on the wire (text, names, values in order) and on any stored item."""
    rule = policy.stored_is_older(incoming, holder, strict=strict)
    present = Exists(Path(key))
    reference = all_of(present, rule.tree() if isinstance(rule, Bound) else rule)
    if not isinstance(rule, Bound):
        return  # P1u takes the template's path only for a Bound rule
    fast = rule.template.after(present).bind(*rule.values)
    assert rule.template.after(present) is rule.template.after(present)  # made once
    assert render(fast) == render(reference)
    assert fast.evaluate(item) is reference.evaluate(item)
    assert fast.evaluate(None) is False


# --- the collector: frozen at startup ------------------------------------------------------


def test_cycles_made_after_the_collector_is_frozen_are_still_collected() -> None:
    """``tune_collector`` (run at startup, before any reload): what a reload makes later is
    not frozen, its cycles are collected; a second tuning changes nothing more."""

    class Node:
        other: Any = None

    before = gc.get_threshold()
    try:
        tune_collector()
        frozen = gc.get_freeze_count()
        assert frozen > 0  # the state: startup's objects are frozen
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        tune_collector()  # a second call: nothing new to freeze but what lives now
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
