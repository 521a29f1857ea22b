"""The lean transport's HTTP/1.1 (``aws.http``) against a raw loopback server: keep-alive
connections reused, a connection the server dropped while idle not reused, answers with
chunked bodies, ``Connection: close`` and a body that ends with the connection."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.http_answers import read_answer as _read_answer

# What the server does with one connection: reads requests, writes raw answers.
Serve = Callable[[socket.socket], None]


def read_request(conn: socket.socket) -> bytes:
    """One whole request (headers, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


class RawServer:
    """Accepts connections on loopback; each is served by ``serve`` in a thread."""

    def __init__(self, serve: Serve) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            self.serve(conn)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serving() -> Iterator[Callable[[Serve], RawServer]]:
    servers: list[RawServer] = []

    def start(serve: Serve) -> RawServer:
        servers.append(RawServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def pool(server: RawServer) -> Pool:
    return Pool(server.url, maxsize=4, connect_timeout=1.0, read_timeout=1.0)


ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}"
)


def keep_alive(conn: socket.socket) -> None:
    while read_request(conn):
        conn.sendall(ANSWER)


HUNG_UP = threading.Event()


def answer_once(conn: socket.socket) -> None:
    """Answers one request as keep-alive, then closes the connection while it is idle."""
    if read_request(conn):
        conn.sendall(ANSWER)
        conn.shutdown(socket.SHUT_RDWR)
        HUNG_UP.set()


def test_a_connection_carries_one_request_after_another(
    serving: Callable[[Serve], RawServer],
) -> None:
    server = serving(keep_alive)
    client = pool(server)
    answers = [client.post(b"{}", {"Host": "h"}) for _ in range(3)]
    assert [(a.status, a.data) for a in answers] == [(200, b"{}")] * 3
    assert server.connections == 1


def test_a_connection_dropped_while_idle_is_not_reused(
    serving: Callable[[Serve], RawServer],
) -> None:
    server = serving(answer_once)
    client = pool(server)
    assert client.post(b"{}", {"Host": "h"}).status == 200
    assert HUNG_UP.wait(5), "the server did not hang up"
    assert client.post(b"{}", {"Host": "h"}).status == 200
    assert server.connections == 2


def test_chunked_and_closing_answers_are_read_whole(
    serving: Callable[[Serve], RawServer],
) -> None:
    answers = [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n',
        b"HTTP/1.1 400 Bad\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nX-Amzn-RequestId: r1\r\n\r\n{}",
    ]

    def in_turn(conn: socket.socket) -> None:
        while read_request(conn) and answers:
            answer = answers.pop(0)
            conn.sendall(answer)
            if b"close" in answer or b"HTTP/1.0" in answer:
                return

    server = serving(in_turn)
    client = pool(server)
    chunked = client.post(b"{}", {"Host": "h"})
    assert (chunked.status, chunked.data) == (200, b'{"a": 1}')
    closing = client.post(b"{}", {"Host": "h"})
    assert (closing.status, closing.data) == (400, b"{}")
    until_close = client.post(b"{}", {"Host": "h"})
    assert until_close.data == b"{}" and until_close.headers["X-Amzn-RequestId"] == "r1"
    assert server.connections == 2  # the chunked answer's connection carried the second


def test_an_answer_cut_short_is_a_closed_connection(
    serving: Callable[[Serve], RawServer],
) -> None:
    def cut(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")

    client = pool(serving(cut))
    with pytest.raises(ConnectionClosedError):
        client.post(b"{}", {"Host": "h"})


HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Crc32: 1\r\n"
    b"x-amz-crc32: 2\r\nContent-Length: 2\r\n\r\n"
)


class Trickle(io.RawIOBase):
    """A socket's bytes as they arrive: at most ``piece`` bytes per read."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece = data, piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        taken, self.data = self.data[: self.piece], self.data[self.piece :]
        buffer[: len(taken)] = taken
        return len(taken)


def test_an_answer_head_in_pieces_reads_as_the_same_answer_in_one() -> None:
    """A head that arrives in pieces (read line by line) and a head in one piece (taken
    from the buffer at once) give the same status, headers, body and keep-alive; what
    follows the answer stays in the reader."""
    answers = []
    for piece in (30, 1, len(HEAD) + 100):
        reader = io.BufferedReader(Trickle(HEAD + b"{}NEXT", piece))
        if piece == 30:
            assert b"\r\n\r\n" not in reader.peek(1)  # the state: the head is not all there
        answer, reusable = _read_answer(reader)
        answers.append((answer.status, dict(answer.headers), answer.data, reusable))
        assert reader.read() == b"NEXT"
    assert answers[0] == answers[1] == answers[2]
    assert answers[2] == (
        200,
        {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Crc32": "1",
            "x-amz-crc32": "2",
            "Content-Length": "2",
        },
        b"{}",
        True,
    )


def test_header_lines_ended_by_lf_alone_are_read(
    serving: Callable[[Serve], RawServer],
) -> None:
    """Lines ended by LF alone (no CR) end where the line reader ends them, as before the
    head was taken from the buffer at once."""

    def bare_lf(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\r\n\r\n{}")

    client = pool(serving(bare_lf))
    for _ in range(2):  # and the connection stays usable
        answer = client.post(b"{}", {"Host": "h"})
        assert (answer.status, dict(answer.headers), answer.data) == (
            200,
            {"Content-Length": "2", "X-A": "b"},
            b"{}",
        )


def test_a_request_larger_than_the_socket_takes_at_once_arrives_whole(
    serving: Callable[[Serve], RawServer],
) -> None:
    """A request that does not fit the socket's buffer (the first write takes part of it)
    is sent on, whole and once: the server answers with what it got, then takes another."""

    def echo_length(conn: socket.socket) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(data) < length:
                data += conn.recv(1 << 20)
            body, data = data[:length], data[length:]
            digest = hashlib.sha256(body).hexdigest().encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + digest)

    server = serving(echo_length)
    client = Pool(server.url, maxsize=4, connect_timeout=1.0, read_timeout=10.0)
    big = bytes(range(256)) * (16 << 12)  # 16 MiB: more than a socket's send buffer
    assert client.post(big, {"Host": "h"}).data == hashlib.sha256(big).hexdigest().encode()
    small = b'{"a": 1}'
    assert client.post(small, {"Host": "h"}).data == hashlib.sha256(small).hexdigest().encode()
    assert server.connections == 1


@pytest.mark.parametrize("answered_before", [0, 1, 2])
def test_an_answer_that_never_comes_is_a_read_timeout_on_a_fresh_or_kept_connection(
    serving: Callable[[Serve], RawServer], answered_before: int
) -> None:
    """A server that reads the request and stays silent: the call raises
    ``ReadTimeoutError`` (a write that may still land), within about the read timeout,
    whether its connection is new or kept from requests answered before (a plain
    connection's reads are timed out by the kernel: SO_RCVTIMEO, not the socket's own
    timeout; an expired one must not read as a closed connection)."""
    silent = threading.Event()

    def answers_then_silence(conn: socket.socket) -> None:
        for _ in range(answered_before):
            if not read_request(conn):
                return
            conn.sendall(ANSWER)
        if read_request(conn):
            silent.set()
            with contextlib.suppress(ConnectionResetError):
                conn.recv(1)  # until the client gives up (its reset)

    client = Pool(
        serving(answers_then_silence).url, maxsize=4, connect_timeout=1.0, read_timeout=0.3
    )
    for _ in range(answered_before):
        assert client.post(b"{}", {"Host": "h"}).data == b"{}"
    began = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.post(b"{}", {"Host": "h"})
    waited = time.monotonic() - began
    assert silent.is_set()  # the state: the request arrived and was never answered
    assert 0.25 <= waited < 3.0
    assert not client._idle  # a connection that timed out is not kept
