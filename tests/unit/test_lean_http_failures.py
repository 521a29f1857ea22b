"""Review of the lean transport after its system-call diet (h-cpu2): how ``aws.http``
writes a request (``os.write``, then ``sendall``), reads an answer's head (from the
buffer at once, or line by line) and reuses a connection (its own poller), and how the
store translates what comes out. The worst outcome is a write misclassified: reported
applied (or refused) when the server said otherwise, or "never sent" when some of it may
have reached the server (docs/concepts/write-path.md). The defects it found are fixed (the
tests under "defects" failed before); the rest pins what held. A raw loopback server
(``test_lean_http.RawServer``) plays the endpoint, and botocore's own client, on the same
server, is the reference."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import socket
import struct
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ConnectionClosedError
from hypothesis import given
from hypothesis import strategies as st

from dynamodb_replicator.aws import http
from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.http_answers import read_answer as _read_answer
from dynamodb_replicator.aws.lean import LeanClient
from dynamodb_replicator.aws.store import DynamoStore
from dynamodb_replicator.core.conditions import TRUE
from dynamodb_replicator.core.errors import may_still_land
from dynamodb_replicator.core.model import ItemKey
from tests.support import poll

from .test_lean_http import ANSWER, RawServer, Serve, Trickle, keep_alive, read_request

Serving = Callable[[Serve], RawServer]


@pytest.fixture
def serving() -> Iterator[Serving]:
    """Starts loopback servers (``RawServer``), each playing ``serve``; closed after."""
    servers: list[RawServer] = []

    def start(serve: Serve) -> RawServer:
        servers.append(RawServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


CONDITION_FAILED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "message": "The conditional request failed",
        "Item": {"pk": {"S": "k"}, "v": {"N": "9"}},
    }
).encode()


def quiet(serve: Serve) -> Serve:
    """``serve``, with the client's reset of its connection (part of these tests) ignored."""

    def serving_quietly(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            serve(conn)

    return serving_quietly


def answer(status: int, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"Content-Length: %d\r\n\r\n" % (status, len(body))
    ) + body


def botocore_client(url: str, timeout: float = 0.5) -> Any:
    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}
    )
    return boto3.session.Session().client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=url,
        config=config,
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )


def stores(url: str, timeout: float = 0.5) -> dict[str, DynamoStore]:
    """The same store over botocore's own transport and over the lean one, both with
    ``timeout`` as connect and read timeout."""
    lean = LeanClient(botocore_client(url, timeout), Credentials("AKID", "secret", "token"))
    return {
        "botocore": DynamoStore(botocore_client(url, timeout), "eu-west-1"),
        "lean": DynamoStore(lean, "eu-west-1"),
    }


def put(store: DynamoStore) -> tuple[bool, Any]:
    result = store.put("T", {"pk": {"S": "k"}, "v": {"N": "1"}}, TRUE)
    return result.applied, result.item


# --- defects (fixed) --------------------------------------------------------------------


def test_an_interim_100_continue_is_skipped_as_botocore_skips_it(serving: Serving) -> None:
    """HTTP/1.1 lets a server send ``100 Continue`` before the answer, asked or not
    (RFC 9110 15.2: a client must parse 1xx answers it did not expect); http.client, so
    botocore, skips it. The lean transport returns it as the answer (status 100, no body:
    a success with no Attributes), so a put that the server refused is reported applied,
    and the refusal stays on the connection for the next call."""

    def interim_then_refusal(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(400, CONDITION_FAILED))

    server = serving(quiet(interim_then_refusal))
    found = {name: [put(store), put(store)] for name, store in stores(server.url).items()}
    refused = (False, {"pk": {"S": "k"}, "v": {"N": "9"}})
    assert found["botocore"] == [refused, refused]  # the reference reads the refusal
    assert found["lean"] == [refused, refused]


def test_bytes_after_an_answer_are_never_the_next_requests_answer(serving: Serving) -> None:
    """A server (or a middlebox) that sends more than the answer it owes (here a second,
    stale answer in the same segment) leaves those bytes in the reader's buffer, where
    ``dropped`` (a poll of the socket) cannot see them; were the connection kept, the next
    request on it would take them as its answer (the second put reported applied, with
    the stale answer's item). The lean transport closes such a connection instead of
    keeping it, so the second put, on a new connection, gets its own answer (a refusal),
    as botocore does (it reads each answer through a fresh buffer on the same connection).
    Each transport has a server of its own, whose first put (on whichever connection)
    gets the applied answer and the stale one, and every later put a refusal."""

    def two_puts(transport: str) -> list[tuple[bool, Any]]:
        puts: list[int] = []

        def stale_bytes_after_the_first_answer(conn: socket.socket) -> None:
            while read_request(conn):
                puts.append(len(puts))
                if len(puts) == 1:
                    applied = answer(200, b"{}")
                    conn.sendall(applied + answer(200, b'{"Attributes": {"pk": {"S": "x"}}}'))
                else:
                    conn.sendall(answer(400, CONDITION_FAILED))

        server = serving(quiet(stale_bytes_after_the_first_answer))
        store = stores(server.url)[transport]
        found = [put(store), put(store)]
        # The state: both puts reached the server (the stale bytes went with the first).
        poll(lambda: len(puts) == 2, f"{transport}'s two puts at the server", timeout=5)
        # botocore discards the stale bytes and keeps the connection; the lean transport
        # closes it.
        assert server.connections == (1 if transport == "botocore" else 2)
        return found

    found = {transport: two_puts(transport) for transport in ("botocore", "lean")}
    expected = [(True, None), (False, {"pk": {"S": "k"}, "v": {"N": "9"}})]
    assert found["botocore"] == expected
    assert found["lean"] == expected


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
    ],
    ids=["content-length", "chunk-size", "negative"],
)
def test_an_absurd_body_length_is_a_closed_connection(serving: Serving, head: bytes) -> None:
    """A length no answer can have comes out as ConnectionClosedError, as every other
    malformed answer does (the one error table: unreachable, may still land). Past a C
    ssize_t, ``reader.read`` raised OverflowError, which escaped ``post`` as itself (the
    store did not translate it) with the socket left open; a negative one read to the end
    of the connection (here: the read timeout)."""

    def absurd(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendall(head)
            conn.recv(1)  # keep the connection open until the client gives up on it

    client = Pool(serving(quiet(absurd)).url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)
    with pytest.raises(ConnectionClosedError):
        client.post(b"{}", {"Host": "h"})


def test_a_connection_header_listing_close_is_not_reused() -> None:
    """``Connection`` is a list of options (RFC 9110 7.6.1): ``keep-alive, close`` (or two
    Connection headers, joined) means the server closes. Kept, the connection carries the
    next write into a closing socket: a ConnectionClosedError that the write path must wait
    out as "may still land", for a request the server never read."""
    head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
    _, reusable = _read_answer(
        io.BufferedReader(Trickle(head + b"Content-Length: 2\r\n\r\n{}", 4096))
    )
    assert not reusable


def test_an_answer_sent_before_the_request_was_read_is_the_answer(serving: Serving) -> None:
    """A server that refuses a request from its head (here: too large, a 400
    ValidationException), answers at once and closes without reading the body makes the
    rest of the send fail (EPIPE or ECONNRESET). botocore (urllib3) then reads the answer
    already received: the item is rejected, never landed, not retried. The lean
    transport raises a closed connection instead: "may still land", retried (and waited
    out by the write path) as if unreachable, for a write the server refused."""
    refused = answer(
        400,
        json.dumps({"__type": "ValidationException", "message": "Item too large"}).encode(),
    ).replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    heads = []

    def refuse_from_the_head(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        heads.append(data)
        conn.sendall(refused)  # and close, the body unread

    server = serving(quiet(refuse_from_the_head))
    item = {"pk": {"S": "k"}, "v": {"S": "x" * (16 << 20)}}  # more than the socket buffers
    # Encoding and signing 16 MiB count against the lean call's send-by instant (its
    # connect timeout from the call's start): on a loaded machine they took more than
    # 0.5 s, and the request was (rightly) never sent. The timeouts fit the body.
    found = {
        t: outcome(functools.partial(s.put, "T", item, TRUE))
        for t, s in stores(server.url, timeout=5.0).items()
    }
    assert len(heads) == 2  # the state: each transport's request reached the server
    assert found["botocore"] == ("ItemRejectedError", False)
    assert found["lean"] == ("ItemRejectedError", False)


# --- what held: writing a request ---------------------------------------------------------


def whole_requests(conn: socket.socket, requests: list[bytes]) -> None:
    """Reads requests (head and Content-Length body) as they come, appends each to
    ``requests`` whole, answers each with ``ANSWER``."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += conn.recv(65536)
        requests.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
        conn.sendall(ANSWER)


REQUEST = b'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n{"a": 1}'


@pytest.mark.parametrize("taken", [None, 0, 1, 30, len(REQUEST) - 1])
def test_a_request_its_first_write_takes_in_part_arrives_whole_and_once(
    serving: Serving, monkeypatch: pytest.MonkeyPatch, taken: int | None
) -> None:
    """The first ``os.write`` takes none (EAGAIN: a full socket), some or all but the last
    byte of the request: ``sendall`` sends the rest, so the server reads the one request,
    byte for byte, once; and the connection carries the next request in step."""
    writes: list[int] = []

    def short_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        if taken is None:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return os.write(fd, data[:taken])

    requests: list[bytes] = []
    server = serving(quiet(lambda conn: whole_requests(conn, requests)))
    client = Pool(server.url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)
    monkeypatch.setattr(http, "os", types.SimpleNamespace(write=short_write))
    assert client.post(b'{"a": 1}', {"Host": "h"}).data == b"{}"
    assert writes == [len(REQUEST)]  # the state: one first write, of the whole request
    assert client.post(b'{"a": 1}', {"Host": "h"}).data == b"{}"
    assert requests == [REQUEST, REQUEST] and server.connections == 1


@pytest.mark.parametrize("error", [BrokenPipeError, ConnectionResetError])
def test_a_write_the_peer_refused_may_still_land(
    serving: Serving, monkeypatch: pytest.MonkeyPatch, error: type[OSError]
) -> None:
    """EPIPE or ECONNRESET from the first write: nothing says no byte left (an earlier
    segment may have), so the failure is a closed connection, "may still land", never
    "not sent"; and the connection is dropped, not kept."""

    def refused(fd: int, data: bytes) -> int:
        raise error()

    client = Pool(serving(quiet(keep_alive)).url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)
    monkeypatch.setattr(http, "os", types.SimpleNamespace(write=refused))
    with pytest.raises(ConnectionClosedError) as raised:
        client.post(b"{}", {"Host": "h"})
    error_ = translate(raised.value, "eu-west-1", "PutItem")
    assert may_still_land(error_) and not client._idle


def reset(conn: socket.socket) -> None:
    """Close ``conn`` with a TCP reset (linger 0), not a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.mark.parametrize("read_first", [0, 100, None], ids=["nothing", "some", "all"])
def test_a_reset_while_or_after_a_request_is_written_may_still_land(
    serving: Serving, read_first: int | None
) -> None:
    """The server resets the connection having read nothing (the request arriving), part
    of a request too large
    for the socket buffers (so the reset comes while ``sendall`` writes), or all of it
    (the write done, the answer lost): each comes out as a closed connection that may
    still land."""
    body = bytes(range(256)) * (16 << 12)  # 16 MiB
    read = threading.Event()

    def reset_after_reading(conn: socket.socket) -> None:
        if read_first is None:
            read_request(conn)  # the head, and the body to its last byte
        elif read_first:
            conn.recv(read_first)
        else:  # the request's first bytes are there, unread: a reset discards them
            conn.recv(1, socket.MSG_PEEK)
        read.set()
        reset(conn)

    client = Pool(
        serving(quiet(reset_after_reading)).url, maxsize=4, connect_timeout=1.0, read_timeout=5.0
    )
    with pytest.raises(ConnectionClosedError) as raised:
        client.post(body, {"Host": "h"})
    assert read.is_set()  # the state: the server read what it was to read, then reset
    translated = translate(raised.value, "eu-west-1", "PutItem")
    assert may_still_land(translated) and not client._idle


def test_a_kept_connection_the_peer_closed_after_the_check_may_still_land(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes an idle kept-alive connection just after the reuse check passed
    (``dropped`` is made to miss it): the write goes into a closed connection. That is a
    closed connection, may still land; not "never sent" (the check cannot know)."""
    hung_up = threading.Event()

    def answer_then_hang_up(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendall(ANSWER)
            conn.shutdown(socket.SHUT_RDWR)
            hung_up.set()

    client = Pool(
        serving(quiet(answer_then_hang_up)).url, maxsize=4, connect_timeout=1.0, read_timeout=1.0
    )
    assert client.post(b"{}", {"Host": "h"}).status == 200
    assert hung_up.wait(5) and len(client._idle) == 1
    monkeypatch.setattr(http._Connection, "dropped", lambda self: False)
    with pytest.raises(ConnectionClosedError) as raised:
        client.post(b"{}", {"Host": "h"})
    assert may_still_land(translate(raised.value, "eu-west-1", "PutItem"))


# --- what held: reading an answer ---------------------------------------------------------


@pytest.mark.parametrize("cut", range(len(ANSWER)))
def test_an_answer_cut_anywhere_is_a_closed_connection(serving: Serving, cut: int) -> None:
    """The server closes after ``cut`` bytes of the answer (in the status line, a header,
    the blank line, the body): a closed connection, may still land."""

    def cut_short(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendall(ANSWER[:cut])

    client = Pool(serving(quiet(cut_short)).url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)
    with pytest.raises(ConnectionClosedError) as raised:
        client.post(b"{}", {"Host": "h"})
    assert may_still_land(translate(raised.value, "eu-west-1", "PutItem"))


def parsed(data: bytes, piece: int) -> tuple[int, dict[str, str], bytes, bool, bytes]:
    """``data``'s answer read from a reader that gets ``piece`` bytes per read, and what
    is left after it."""
    reader = io.BufferedReader(Trickle(data, piece))
    found, reusable = _read_answer(reader)
    return found.status, dict(found.headers), found.data, reusable, reader.read()


header_names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"), min_size=1
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.strip
)


@given(
    headers=st.lists(st.tuples(header_names, header_values, st.booleans()), max_size=8),
    bare_blank_line=st.booleans(),
    body=st.binary(max_size=30),
    chunked=st.booleans(),
    piece=st.integers(1, 64),
)
def test_an_answer_reads_the_same_whole_in_the_buffer_or_in_pieces(
    headers: list[tuple[str, str, bool]],
    bare_blank_line: bool,
    body: bytes,
    chunked: bool,
    piece: int,
) -> None:
    """Any head (lines ended by CRLF or LF alone, any header names), a Content-Length or
    chunked body (a chunk extension, a trailer; chunked winning over a Content-Length),
    and the bytes of a next answer after it: read with the head all in the buffer (taken
    at once) or arriving in pieces (line by line), the same answer comes out, and the
    next answer's bytes stay in the reader."""
    lines = [b"HTTP/1.1 200 OK\r\n"]
    for name, value, bare in headers:
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}".encode() + (b"\n" if bare else b"\r\n"))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\nContent-Length: 999\r\n")
        trailer = b"X-Trailer: t\r\n" if bare_blank_line else b""
        framed = b"%x;ext=1\r\n" % len(body) + body + b"\r\n" if body else b""
        framed += b"0\r\n" + trailer + b"\r\n"
    else:
        lines.append(b"Content-Length: %d\r\n" % len(body))
        framed = body
    data = b"".join(lines) + (b"\n" if bare_blank_line else b"\r\n") + framed + ANSWER
    whole, pieces = parsed(data, 8192), parsed(data, piece)
    assert whole == pieces
    assert whole[2] == body and whole[4] == ANSWER


def test_a_head_larger_than_the_buffer_is_read_line_by_line() -> None:
    """A head past the reader's 8 KiB buffer (no blank line in what ``peek`` shows) is
    read line by line, whole."""
    big = "x" * 20000
    data = f"HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    reader = io.BufferedReader(Trickle(data, 8192))
    assert b"\r\n\r\n" not in reader.peek(1)  # the state: the head is not all in the buffer
    found, reusable = _read_answer(reader)
    assert (found.headers["X-Big"], found.data, reusable) == (big, b"{}", True)


# --- what held: the store's translation, the poller, threads ------------------------------


def error_answer(status: int, kind: str) -> bytes:
    return answer(status, json.dumps({"__type": kind, "message": "m"}).encode())


KEY = ItemKey((("pk", "S", "k"),))

OUTCOMES: dict[str, Serve] = {
    "throttled": lambda conn: conn.sendall(
        error_answer(400, "com.amazonaws.dynamodb.v20120810#ThrottlingException")
    ),
    "over-capacity": lambda conn: conn.sendall(
        error_answer(400, "ProvisionedThroughputExceededException")
    ),
    "server-error": lambda conn: conn.sendall(error_answer(500, "InternalServerError")),
    "bare-503": lambda conn: conn.sendall(answer(503, b"")),
    "condition-failed": lambda conn: conn.sendall(answer(400, CONDITION_FAILED)),
    "rejected": lambda conn: conn.sendall(error_answer(400, "ValidationException")),
    "applied": lambda conn: conn.sendall(answer(200, b'{"Attributes": {"pk": {"S": "o"}}}')),
    "hung-up": reset,
}


def outcome(write: Callable[[], Any]) -> tuple[str, Any]:
    """What a store call came to: its result's fields, or its error's type and whether
    the write may still land."""
    try:
        result = write()
    except Exception as exc:  # any error is an outcome to compare
        return type(exc).__name__, may_still_land(exc)
    return "result", (result.applied, result.item)


@pytest.mark.parametrize("name", OUTCOMES)
def test_the_store_translates_the_lean_transports_failures_as_botocores(
    serving: Serving, name: str
) -> None:
    """Each answer (a throttle, a 5xx with and without a code, a false condition, a
    rejection, success, a reset after the request) comes out of ``DynamoStore.put`` and
    ``delete`` the same over the lean transport as over botocore's: the same error type,
    the same "may still land", the same result."""
    serve = OUTCOMES[name]

    def each_request(conn: socket.socket) -> None:
        while read_request(conn):
            serve(conn)

    server = serving(quiet(each_request))
    found = {
        transport: [
            outcome(functools.partial(store.put, "T", {"pk": {"S": "k"}}, TRUE)),
            outcome(functools.partial(store.delete, "T", KEY, TRUE)),
        ]
        for transport, store in stores(server.url).items()
    }
    assert found["lean"] == found["botocore"]
    assert found["lean"][0] == EXPECTED[name]  # and it is the outcome the table gives


EXPECTED = {
    "throttled": ("ThrottledError", False),
    "over-capacity": ("ThrottledError", False),
    "server-error": ("ServerError", True),
    "bare-503": ("ServerError", True),
    "condition-failed": ("result", (False, {"pk": {"S": "k"}, "v": {"N": "9"}})),
    "rejected": ("ItemRejectedError", False),
    "applied": ("result", (True, {"pk": {"S": "o"}})),
    "hung-up": ("UnreachableError", True),
}


def test_a_closed_port_is_never_sent_by_either_transport() -> None:
    """Nothing listening: both transports say unreachable, and "never sent" (the write
    path retries it at once)."""
    with socket.socket() as unused:  # a port bound, never listened on, then released
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    found = {
        t: outcome(functools.partial(s.put, "T", {"pk": {"S": "k"}}, TRUE))
        for t, s in stores(url).items()
    }
    assert found == {"botocore": ("UnreachableError", False), "lean": ("UnreachableError", False)}


def test_a_dropped_connection_is_closed_at_checkout_and_its_successor_kept(
    serving: Serving,
) -> None:
    """A connection the server dropped while idle is closed at checkout (its socket, so
    its descriptor, released: whatever socket takes that number next is polled by its own
    connection's poller, and the closed one is never polled again) and a new connection
    carries the request, then is kept and reused."""
    hung_up = threading.Event()

    def answer_then_hang_up_once(conn: socket.socket) -> None:
        first = not hung_up.is_set()
        while read_request(conn):
            conn.sendall(ANSWER)
            if first:
                conn.shutdown(socket.SHUT_RDWR)
                hung_up.set()
                return

    server = serving(quiet(answer_then_hang_up_once))
    client = Pool(server.url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)
    assert client.post(b"{}", {"Host": "h"}).status == 200
    assert hung_up.wait(5)
    (old,) = client._idle
    assert client.post(b"{}", {"Host": "h"}).status == 200
    (new,) = client._idle
    assert new is not old and old.sock.fileno() == -1  # the state: the old one closed
    assert not new.dropped()
    assert client.post(b"{}", {"Host": "h"}).status == 200 and server.connections == 2


def test_threads_sharing_a_pool_each_get_their_own_answer(serving: Serving) -> None:
    """Eight threads post at once through one pool (fewer kept connections than threads):
    every answer is the one to its own request (the server echoes the body)."""

    def echo(conn: socket.socket) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += conn.recv(65536)
            body, data = rest[:length], rest[length:]
            conn.sendall(answer(200, body))

    client = Pool(serving(quiet(echo)).url, maxsize=3, connect_timeout=1.0, read_timeout=5.0)
    wrong: list[tuple[bytes, bytes]] = []
    done: list[int] = []

    def worker(n: int) -> None:
        for i in range(40):
            body = b'{"t": %d, "i": %d}' % (n, i)
            got = client.post(body, {"Host": "h"}).data
            if got != body:
                wrong.append((body, got))
        done.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(done) == list(range(8)) and not wrong
