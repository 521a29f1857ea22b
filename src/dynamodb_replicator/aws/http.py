"""HTTP/1.1 for the lean transport's one request shape: ``POST /`` with a JSON body, on
keep-alive connections of one endpoint.

urllib3 and ``http.client`` cost about 0.3 ms of CPU per call on the benchmark machine (the
answer's headers parsed by the ``email`` package, each request header validated and
encoded on its own, a pool checked out through a queue): most of what the lean transport
spent per write. Here a request is one ``sendall`` of bytes built at once, and an answer is
its status line, its headers split on ``:`` and ``Content-Length`` (or chunked) bytes
(``aws.http_answers``).

Failures come out as botocore's exceptions, the same mapping botocore's own HTTP session
makes for urllib3's (``aws.lean``), so the one error table translates them:
connecting times out -> ``ConnectTimeoutError``; cannot connect -> ``EndpointConnectionError``;
no answer in the read timeout -> ``ReadTimeoutError``; the connection lost before a whole
answer -> ``ConnectionClosedError``; TLS -> ``SSLError``. Nothing is retried here: retries
are the one backoff's (``core.retry``).

A connection carries another request only if its answer allows it (HTTP/1.1, no ``close``
among its ``Connection`` options, a body of known length) and left nothing unread behind
it: bytes past an answer (a server sending more than it owed, whether in the reader's
buffer, the kernel or, over TLS, decrypted inside OpenSSL) would be taken for the next
request's answer, so such a connection is closed. A server may answer a request from its
head (a refusal) and close before reading the rest, so that the send fails (over TLS as
``ssl.SSLEOFError``): the answer that came is then read, as urllib3 reads it; with none to
read, the failure is a closed connection (it may still land). An error before the first
byte went out is the only "never sent"; every failure after it resets the connection
(``SO_LINGER`` 0), so that what the kernel still held of the request is discarded rather
than delivered after the call gave up on it.

A request has one send-by instant (by default the connect timeout after ``post`` was
called; ``aws.lean`` counts it from the call's start, before signing): the name's
resolution, the connects to its addresses (each gets only what is left, not a connect
timeout of its own), the TLS handshake (as a whole, not per read) and a reused
connection's check all come out of it, and past it nothing is sent: the connection is
closed and the call raises ``ConnectTimeoutError``. The send and the answer then have the
read timeout. So a request reaches the server within connect + read timeout of the
instant its budget started, or never (fencing by time: docs/concepts/guarantees.md).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import select
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from dynamodb_replicator.aws.http_answers import Answer, read_answer

__all__ = ["Answer", "Pool"]

# SO_LINGER on, for 0 seconds: close() resets the connection.
_RESET = struct.pack("ii", 1, 0)


class _Counted(socket.SocketIO):
    """A socket's reading end that counts the bytes it delivered: its ``tell``, so that
    the buffered reader's ``tell`` (that count less what it holds unread) works."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, "rb")
        self.delivered = 0

    def readinto(self, b: Any) -> int | None:
        n = super().readinto(b)
        if n:
            self.delivered += n
        return n

    def tell(self) -> int:
        return self.delivered


class _Connection:
    """One socket and its buffered reader; used by one thread at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._raw = _Counted(sock)
        self.reader = io.BufferedReader(self._raw)
        # A plain socket with a timeout is non-blocking underneath, and its ``sendall``
        # polls for room before every send: a system call (and a hand-over of the GIL)
        # per request for nothing, as a request fits in an idle connection's buffer. TLS
        # sockets try the write first already.
        plain = not isinstance(sock, ssl.SSLSocket) and bool(sock.gettimeout())
        self._fd = sock.fileno() if plain else -1
        # poll, not select: select fails on descriptors above 1023, and a runner with
        # many targets holds many sockets. One poller per connection, registered once:
        # the check runs before every request that reuses it.
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        # Bytes OpenSSL read and decrypted past the answer (in the same record) sit in the
        # SSL object: neither the socket's poll nor the reader's count sees them.
        self._pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None

    def pending(self) -> bool:
        """Whether TLS holds decrypted bytes no read took yet (never, on plain TCP)."""
        try:
            return self._pending is not None and self._pending() > 0
        except (OSError, ValueError):
            return True

    def send(self, data: bytes) -> None:
        """All of ``data``: written at once where the socket takes it, the rest (or all,
        on TLS) by ``sendall`` within the socket's timeout."""
        if self._fd >= 0:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.sock.sendall(data)

    def dropped(self) -> bool:
        """Whether the server closed (or wrote to) this idle connection: readable while
        no request is out means end of file, or bytes nobody asked for (in the kernel, or
        already in TLS's hands)."""
        if self.pending():
            return True
        try:
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True

    def unread(self) -> bool:
        """Whether the reader holds bytes no answer took (a server sending more than the
        answer it owed), or TLS holds some: the next request would take them for its
        answer."""
        return self._raw.delivered != self.reader.tell() or self.pending()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0): what the kernel still queued of a request given
        up on is discarded, not delivered after the failure (a graceful close goes on
        sending it for as long as TCP retries), and the server sees it incomplete."""
        with contextlib.suppress(OSError):  # closed already: nothing queued to discard
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self.close()


class Pool:
    """Keep-alive connections to the endpoint ``url`` (``http`` or ``https``, no path):
    up to ``maxsize`` kept idle; more callers at once open more (closed after use)."""

    def __init__(
        self,
        url: str,
        *,
        maxsize: int,
        connect_timeout: float,
        read_timeout: float,
        ca_certs: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        default = 443 if parts.scheme == "https" else 80
        self._address = (parts.hostname or "", parts.port or default)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=ca_certs)
        self._maxsize = maxsize
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # deque's append and pop are atomic: no lock on the hot path.
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False

    def close(self) -> None:
        """Close the idle connections; those in use close when they come back."""
        self._closed = True
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    def send_by(self) -> float:
        """The instant (``time.monotonic``) a request whose budget starts now must go out
        by: the connect timeout from now."""
        return time.monotonic() + self._connect_timeout

    def post(
        self, body: bytes, headers: Mapping[str, str], *, send_by: float | None = None
    ) -> Answer:
        """``POST /`` with ``headers`` (Host included) and ``body``: one attempt, sent by
        ``send_by`` (default: ``self.send_by()``) or not at all (``ConnectTimeoutError``)."""
        if send_by is None:
            send_by = self.send_by()
        lines = ["POST / HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = "\r\n".join(lines).encode("latin-1") + body
        connection = self._checkout(send_by)
        # The last moment to give up with nothing sent: whatever came before (credentials,
        # name resolution, connects, TLS) took the budget, the request does not go out.
        if time.monotonic() >= send_by:
            connection.close()
            raise ConnectTimeoutError(endpoint_url=self.url, error="the send-by instant passed")
        # From here the request may have gone out, in part: a failure resets the connection
        # (abort), so that none of it arrives after the call gave up on it.
        try:
            answer, reusable = _exchange(connection, request)
        except TimeoutError as exc:
            connection.abort()
            raise ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
        except ssl.SSLError as exc:
            connection.abort()
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except (OSError, ValueError) as exc:
            connection.abort()
            raise ConnectionClosedError(endpoint_url=self.url, error=exc) from exc
        reusable = reusable and not connection.unread()
        if reusable and not self._closed and len(self._idle) < self._maxsize:
            self._idle.append(connection)
            if self._closed:  # closed between the check and the append: close it too
                self._drain()
        else:
            connection.close()
        return answer

    def _checkout(self, send_by: float) -> _Connection:
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return self._connect(send_by)
            if not connection.dropped():
                return connection
            connection.close()

    def _connect(self, send_by: float) -> _Connection:
        host, port = self._address
        try:
            found = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
            sock = _first_to_answer(found, send_by)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        try:
            # Small requests go out at once, not after the peer's delayed ACK (urllib3's
            # default too).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                # CPython bounds the handshake as a whole by the socket's timeout (one
                # deadline across its reads and writes): the budget's rest.
                sock.settimeout(_left(send_by))
                sock = self._tls.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:
            sock.close()
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        sock.settimeout(self._read_timeout)
        return _Connection(sock)


def _exchange(connection: _Connection, request: bytes) -> tuple[Answer, bool]:
    """``request`` sent on ``connection``, and the answer read (whether the connection
    can carry another). A server may answer (a refusal) and close before it read the
    whole request, so that the send fails: its answer, when one came, is then read, as
    urllib3 reads it; otherwise the send's error (a closed connection: may still land)."""
    try:
        connection.send(request)
    except (ConnectionError, ssl.SSLEOFError):
        # Over TLS (after the handshake) the peer's close shows in the send as SSLEOFError
        # rather than a ConnectionError: the same failure, the same answer to look for.
        if not connection.dropped():  # nothing to read: no answer came
            raise
        answer, _ = read_answer(connection.reader)
        return answer, False
    return read_answer(connection.reader)


def _left(send_by: float) -> float:
    """What is left of the budget; TimeoutError when nothing is."""
    left = send_by - time.monotonic()
    if left <= 0:
        raise TimeoutError("the send-by instant passed")
    return left


def _first_to_answer(found: Sequence[tuple[Any, ...]], send_by: float) -> socket.socket:
    """A socket connected to the first of the addresses ``found`` that answers, each tried
    with what is left of the budget (``socket.create_connection`` gives each the whole
    timeout: three dead addresses would take three). The last failure, as
    ``create_connection`` raises it; TimeoutError once the budget is gone."""
    failure: OSError = OSError("the name resolved to no address")
    for family, kind, proto, _, address in found:
        left = _left(send_by)
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        return sock
    raise failure
