"""The idle check of a kept plain-HTTP connection (``aws.http``): on Linux it reads TCP_INFO
(no hand-over of the GIL) and says "not dropped" only where a poll would find nothing; an
end of file, a reset or bytes nobody asked for still make the connection dropped."""

from __future__ import annotations

import select
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from dynamodb_replicator.aws.http import _Connection

linux = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's layout is Linux's")


class _NoPoll:
    """A poller that fails the test if the idle check falls back to it."""

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        raise AssertionError("the idle check polled")


@pytest.fixture
def pair() -> Iterator[tuple[_Connection, socket.socket]]:
    """A kept connection (a socket with a timeout, as the pool makes) and the server's end,
    after one answer read whole."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    client.settimeout(1.0)
    server, _ = listener.accept()
    listener.close()
    connection = _Connection(client)
    server.sendall(b"an answer")
    assert connection.reader.read(9) == b"an answer"
    yield connection, server
    connection.close()
    server.close()


def _readable(connection: _Connection) -> None:
    """Wait (poll, up to 5 s) until what the server did reached the client's kernel."""
    poller = select.poll()
    poller.register(connection.sock, select.POLLIN)
    assert poller.poll(5000), "the server's bytes or close never arrived"


@linux
def test_an_idle_connection_with_everything_read_is_kept_without_a_poll(
    pair: tuple[_Connection, socket.socket],
) -> None:
    connection, _ = pair
    connection._poller = _NoPoll()  # type: ignore[assignment]
    assert not connection.dropped()


def _stray_bytes(server: socket.socket) -> None:
    server.sendall(b"x")


def _end_of_file(server: socket.socket) -> None:
    server.shutdown(socket.SHUT_WR)


def _reset(server: socket.socket) -> None:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()


@pytest.mark.parametrize("what", [_stray_bytes, _end_of_file, _reset])
def test_an_idle_connection_the_server_wrote_to_or_closed_is_dropped(
    pair: tuple[_Connection, socket.socket], what: object
) -> None:
    connection, server = pair
    what(server)  # type: ignore[operator]
    _readable(connection)
    assert connection.dropped()
    # ... by TCP_INFO already, where there is one: the poll is not what caught it.
    if sys.platform == "linux":
        assert not connection._settled()
