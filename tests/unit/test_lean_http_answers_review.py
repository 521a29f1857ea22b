"""Adversarial review of the lean transport's answer reading (``aws.http``,
``aws.http_answers``) after the fix that skips 1xx heads, closes a connection holding
unread bytes, reads an answer sent before the request was read, bounds lengths and parses
``Connection`` options. Loopback servers (plain and TLS) play the endpoint. Tests under
"defects" each reproduced a way an answer was misread or attributed to the wrong request
(strict xfails until fixed); the rest pins what held."""

from __future__ import annotations

import collections
import fcntl
import functools
import io
import json
import socket
import ssl
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.http_answers import read_answer
from dynamodb_replicator.core.conditions import TRUE

from .test_lean_http import RawServer, Serve, keep_alive, read_request, serving  # noqa: F401
from .test_lean_http_failures import outcome, quiet, stores
from .test_lean_send_by import certificate  # noqa: F401 (a fixture)


def answer(body: bytes, status: int = 200, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n" % (status, extra, len(body)) + body


def answer_of_size(size: int, tag: bytes) -> bytes:
    """A 200 answer exactly ``size`` bytes long (head and body), its body ``tag`` padded."""
    head = len(answer(b""))
    body_length = size - head
    # The Content-Length's digits count in the head: adjust until the sizes agree.
    while len(answer(tag.ljust(body_length, b" "))) != size:
        body_length += size - len(answer(tag.ljust(body_length, b" ")))
    return answer(tag.ljust(body_length, b" "))


class TLSServer(RawServer):
    """``RawServer`` speaking TLS (the certificate's) on each connection it accepts."""

    def __init__(self, cert: Path, key: Path, serve: Serve) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        super().__init__(serve)
        self.url = self.url.replace("http://", "https://")

    def _one(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.serve(tls)
        except OSError:
            pass  # the client's close (part of these tests)


@pytest.fixture
def tls_serving(
    certificate: tuple[Path, Path],  # noqa: F811 (the imported fixture)
) -> Iterator[Callable[[Serve], TLSServer]]:
    servers: list[TLSServer] = []

    def start(serve: Serve) -> TLSServer:
        servers.append(TLSServer(*certificate, serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _unacknowledged(conn: socket.socket) -> int:
    """Bytes ``conn`` sent that its peer has not acknowledged yet (its send queue)."""
    queued = fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", queued)[0])


# --- defects (fixed) ----------------------------------------------------------------------


def test_tls_bytes_past_an_answer_are_never_the_next_requests_answer(
    tls_serving: Callable[[Serve], TLSServer],
    certificate: tuple[Path, Path],  # noqa: F811
) -> None:
    """A server sending more than the answer it owed, in the same TLS record: the answer
    ends exactly where the buffered reader's first fill (``io.DEFAULT_BUFFER_SIZE`` bytes)
    ends, so the reader holds nothing unread and the socket has nothing to poll, while
    OpenSSL holds the rest of the record, decrypted. The connection is kept, and the next
    request takes the stale bytes as its answer (a refusal reported applied, here). On
    plain TCP the same bytes stay in the kernel, where ``dropped`` sees them (held below).
    Fix: a connection whose ``sock.pending()`` is non-zero is not kept (check it with
    ``unread``)."""
    first = answer_of_size(io.DEFAULT_BUFFER_SIZE, b'{"first": 1}')
    stale = answer(b'{"stale": 1}')
    requests: list[int] = []

    def stale_bytes_in_the_same_record(conn: socket.socket) -> None:
        while read_request(conn):
            requests.append(len(requests))
            if len(requests) == 1:
                conn.sendall(first + stale)  # one write, < 16 KiB: one TLS record
            else:
                conn.sendall(answer(b'{"second": 1}', 400))

    server = tls_serving(stale_bytes_in_the_same_record)
    client = Pool(
        server.url,
        maxsize=4,
        connect_timeout=2.0,
        read_timeout=2.0,
        ca_certs=str(certificate[0]),
    )
    got = client.post(b"{}", {"Host": "h"})
    assert got.data.startswith(b'{"first": 1}')  # the state: the first answer, whole
    second = client.post(b"{}", {"Host": "h"})
    assert (second.status, second.data) == (400, b'{"second": 1}')


def test_a_chunk_longer_than_its_size_is_a_malformed_answer() -> None:
    """A chunk must be followed by CRLF. Here the size says 2 but 20 bytes follow: the
    lean reader takes ``{}`` as the whole body and throws the rest away with the line
    (a write reported applied with no Attributes, from an answer that was not one);
    ``http.client`` (botocore) fails on it. Fix: the line after a chunk's data must be
    CRLF, else ValueError (a closed connection, may still land)."""
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'2\r\n{}{"Attributes": {}}\r\n0\r\n\r\n'
    )
    with pytest.raises(ValueError):
        read_answer(io.BufferedReader(io.BytesIO(data)))


def test_sixteen_interim_answers_are_read_past() -> None:
    """``_MAX_INTERIM`` (16) is documented as the interim answers read past before one is
    final; the loop reads 16 heads in all, so 16 interim ones fail the answer (a closed
    connection) that 15 do not. Low: no server sends that many; fix the bound or the
    comment."""
    data = b"HTTP/1.1 100 Continue\r\n\r\n" * 16 + answer(b"{}")
    got, _ = read_answer(io.BufferedReader(io.BytesIO(data)))
    assert got.status == 200


@pytest.mark.parametrize("status", [b"099", b"-1 ", b"+99", b"2_0", b"20 "])
def test_a_status_that_is_not_three_digits_is_never_a_success(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
    status: bytes,
) -> None:
    """A status line whose code is not three digits from 100 to 999 is no answer:
    ``http.client`` raises BadStatusLine, so botocore reports a closed connection (may
    still land). The lean transport parses ``int`` of three bytes (which takes ``-1 ``,
    ``+99``, ``2_0``), and ``aws.lean`` reads any status under 300 as success: the put
    is reported applied. Fix: the status must be three ASCII digits, 100..999 (else
    ValueError)."""

    def odd_status(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 " + status + b" X\r\nContent-Length: 2\r\n\r\n{}")

    server = serving(quiet(odd_status))
    found = {
        transport: outcome(functools.partial(store.put, "T", {"pk": {"S": "k"}}, TRUE))
        for transport, store in stores(server.url).items()
    }
    assert found["botocore"] == ("UnreachableError", True)  # the reference: may still land
    assert found["lean"] == found["botocore"]


# --- what held ----------------------------------------------------------------------------


def test_plain_bytes_past_an_answer_at_the_buffer_edge_close_the_connection(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """The plain-TCP twin of the TLS defect: the answer fills the reader's buffer exactly
    and the stale bytes stay in the kernel, where ``dropped`` sees them at checkout."""
    first = answer_of_size(io.DEFAULT_BUFFER_SIZE, b'{"first": 1}')
    stale = answer(b'{"stale": 1}')
    requests: list[int] = []

    def stale_bytes_after(conn: socket.socket) -> None:
        while read_request(conn):
            requests.append(len(requests))
            if len(requests) == 1:
                conn.sendall(first + stale)
            else:
                conn.sendall(answer(b'{"second": 1}', 400))

    server = serving(quiet(stale_bytes_after))
    client = Pool(server.url, maxsize=4, connect_timeout=2.0, read_timeout=2.0)
    assert client.post(b"{}", {"Host": "h"}).data.startswith(b'{"first": 1}')
    second = client.post(b"{}", {"Host": "h"})
    assert (second.status, second.data) == (400, b'{"second": 1}')
    assert server.connections == 2


def test_chunked_answer_with_interims_extensions_and_trailers_reads_whole() -> None:
    """1xx heads (one with headers), then chunks with extensions and trailers: the body
    is the chunks joined, and nothing after the trailers is taken."""
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;ext=1\r\n{"a\r\n5\r\n": 1}\r\n0\r\nX-Trailer: 1\r\nConnection: close\r\n\r\n'
        b"NEXT"
    )
    reader = io.BufferedReader(io.BytesIO(data))
    got, reusable = read_answer(reader)
    assert (got.status, got.data, reusable) == (200, b'{"a": 1}', True)
    assert reader.read() == b"NEXT"


@pytest.mark.parametrize("after", [False, True], ids=["reset-before-answer", "after-answer"])
def test_a_reset_around_the_answer_is_the_answer_or_a_closed_connection(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
    after: bool,
) -> None:
    """A reset right after the whole answer: the answer is read, the connection is not
    reused for the next request (a new one carries it). A reset before any answer byte:
    a closed connection, never an answer."""
    requests: list[int] = []

    def answer_then_reset(conn: socket.socket) -> None:
        if read_request(conn):
            requests.append(1)
            if after:
                conn.sendall(answer(b'{"one": 1}'))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    server = serving(quiet(answer_then_reset))
    client = Pool(server.url, maxsize=4, connect_timeout=2.0, read_timeout=2.0)
    if not after:
        with pytest.raises(ConnectionClosedError):
            client.post(b"{}", {"Host": "h"})
        assert requests == [1] and not client._idle
        return
    assert client.post(b"{}", {"Host": "h"}).data == b'{"one": 1}'
    # the reset has come by now, or comes while the next request goes out: either way a
    # new connection or a closed one, never the old answer again.
    try:
        again = client.post(b"{}", {"Host": "h"})
    except ConnectionClosedError:
        return
    assert again.data == b'{"one": 1}' and server.connections == 2


def test_tls_an_answer_sent_before_the_request_was_read_is_the_answer(
    tls_serving: Callable[[Serve], TLSServer],
    certificate: tuple[Path, Path],  # noqa: F811
) -> None:
    """The TLS twin of the early refusal: the server reads the head, answers 400 with
    ``Connection: close`` and closes with the body unread (a reset), so the TLS send
    fails. On plain TCP the fix reads the answer that came (a rejection); over TLS,
    DynamoDB's only scheme, the send fails with ``ssl.SSLEOFError``, which ``_exchange``
    does not catch: an ``SSLError`` ("SSL validation failed"), may still land, retried
    and waited out for a write the server refused. botocore (urllib3 re-raises it too)
    does the same, so this is the fix's reach, not a regression. Fix: treat
    ``ssl.SSLEOFError`` (and SSL errors after the handshake) in the send like
    ConnectionError; the answer is read only if OpenSSL still yields it."""
    refused = answer(
        json.dumps({"__type": "ValidationException", "message": "too large"}).encode(),
        400,
        b"Connection: close\r\n",
    )
    heads: list[bytes] = []

    def refuse_from_the_head(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        heads.append(data)
        conn.sendall(refused)
        # Closing with the body unread resets the connection, and a reset discards what
        # the server's kernel has not sent yet: wait until the client acknowledged the
        # answer (the send queue empty), so that only the client's side is tested.
        while _unacknowledged(conn):
            threading.Event().wait(0.001)

    server = tls_serving(refuse_from_the_head)
    client = Pool(
        server.url, maxsize=4, connect_timeout=5.0, read_timeout=5.0, ca_certs=str(certificate[0])
    )
    got = client.post(b"x" * (16 << 20), {"Host": "h"})
    assert len(heads) == 1  # the state: the request's head reached the server
    assert got.status == 400 and not client._idle


def test_a_request_given_up_on_does_not_go_on_arriving_after_the_failure() -> None:
    """The fence (aws/http.py: a request reaches the server within connect + read timeout
    of its budget's start, or never) needs a request the client gave up on to stop
    there. ``sendall`` returns once the request is in the client's kernel, not at the
    server; when the answer then times out, ``post`` closes the socket with ``close()``,
    and the kernel goes on delivering the queued tail (for as long as TCP retries: minutes
    under a closed window). Here the server's receive buffer is far smaller than the
    request and it reads nothing until the client raised: the rest was still queued in
    the client at the failure, yet the server then reads the whole request (it may
    apply it: a write landing after its wait ended). Fix: on every failure after the
    first byte, close with SO_LINGER 0 (a reset: the unsent tail is discarded and the
    server sees an incomplete request)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    gave_up = threading.Event()
    received: list[int] = []
    held: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            held.append(conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            gave_up.wait(10)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                pass  # a reset: the request never arrived whole
            received.append(len(data))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client = Pool(
        f"http://127.0.0.1:{listener.getsockname()[1]}",
        maxsize=1,
        connect_timeout=2.0,
        read_timeout=0.5,
    )
    body = b"x" * (1 << 19)
    try:
        with pytest.raises(ReadTimeoutError):
            client.post(body, {"Host": "h"})
    finally:
        gave_up.set()
        server.join(10)
        listener.close()
    # The state: the request was larger than all the server could hold when it gave up.
    assert held and len(body) > 2 * held[0]
    assert received and received[0] < len(body)


def test_a_connection_answered_early_and_kept_carries_the_next_request_in_step(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """A server that answers a request from its head (a keep-alive 400) before reading
    its body, then reads the body and serves the next request on the same connection:
    the client's send completed, so the connection is kept, and the next request gets
    its own answer, not the first one's."""
    heads: list[bytes] = []

    def early_then_in_step(conn: socket.socket) -> None:
        while True:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            heads.append(head)
            if len(heads) == 1:
                conn.sendall(answer(b'{"early": 1}', 400))
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(65536)
            if len(heads) > 1:
                conn.sendall(answer(b'{"next": %d}' % len(heads)))

    server = serving(quiet(early_then_in_step))
    client = Pool(server.url, maxsize=4, connect_timeout=2.0, read_timeout=2.0)
    first = client.post(b"y" * 4096, {"Host": "h"})
    assert (first.status, first.data) == (400, b'{"early": 1}')
    second = client.post(b"{}", {"Host": "h"})
    assert (second.status, second.data) == (200, b'{"next": 2}')
    assert len(heads) == 2 and server.connections == 1


def test_a_connection_coming_back_while_the_pool_closes_is_closed(
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the imported fixture)
) -> None:
    """``Pool.close``: "those in use close when they come back". A thread returning its
    connection passes the ``_closed`` check, then another thread closes the pool (here:
    forced into the gap, at the ``len`` of the idle deque), then the first appends: the
    connection stays open and idle in a closed pool (a socket leaked until collected,
    and reused by any later ``post``). Low. Fix: after appending, if the pool closed
    meanwhile, drain ``_idle`` again (close is idempotent)."""
    client = Pool(serving(quiet(keep_alive)).url, maxsize=4, connect_timeout=2.0, read_timeout=2.0)

    class ClosingInTheGap(collections.deque[Any]):
        def __len__(self) -> int:
            if not client._closed:
                client.close()  # another thread, between post's _closed check and its append
            return super().__len__()

    client._idle = ClosingInTheGap()
    assert client.post(b"{}", {"Host": "h"}).status == 200
    assert client._closed  # the state: the pool closed while the connection came back
    assert not list(client._idle)
