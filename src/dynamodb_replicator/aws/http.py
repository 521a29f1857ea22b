"""HTTP/1.1 for the lean transport's one request shape: ``POST /`` with a JSON body, on
keep-alive connections of one endpoint.

urllib3 and ``http.client`` cost about 0.3 ms of CPU per call on the benchmark machine (the
answer's headers parsed by the ``email`` package, each request header validated and
encoded on its own, a pool checked out through a queue): most of what the lean transport
spent per write. Here a request is one ``sendall`` of bytes built at once, and an answer is
its status line, its headers split on ``:`` and ``Content-Length`` (or chunked) bytes.

Failures come out as botocore's exceptions, the same mapping botocore's own HTTP session
makes for urllib3's (``aws.lean``), so the one error table translates them:
connecting times out -> ``ConnectTimeoutError``; cannot connect -> ``EndpointConnectionError``;
no answer in the read timeout -> ``ReadTimeoutError``; the connection lost before a whole
answer -> ``ConnectionClosedError``; TLS -> ``SSLError``. Nothing is retried here: retries
are the one backoff's (``core.retry``).
"""

from __future__ import annotations

import collections
import select
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

__all__ = ["Answer", "Pool"]

# A status line or header line longer than this is no DynamoDB answer.
_MAX_LINE = 65536


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers (a repeated header's values joined by ", ", as
    urllib3 does), body."""

    status: int
    headers: Mapping[str, str]
    data: bytes


class _Connection:
    """One socket and its buffered reader; used by one thread at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def dropped(self) -> bool:
        """Whether the server closed (or wrote to) this idle connection: readable while
        no request is out means end of file, or bytes nobody asked for."""
        # poll, not select: select fails on descriptors above 1023, and a runner with
        # many targets holds many sockets.
        poller = select.poll()
        try:
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


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
        while self._idle:
            self._idle.pop().close()

    def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """``POST /`` with ``headers`` (Host included) and ``body``: one attempt."""
        lines = ["POST / HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = "\r\n".join(lines).encode("latin-1") + body
        connection = self._checkout()
        try:
            connection.sock.sendall(request)
            answer, reusable = _read_answer(connection.reader)
        except TimeoutError as exc:
            connection.close()
            raise ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
        except ssl.SSLError as exc:
            connection.close()
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except (OSError, ValueError) as exc:
            connection.close()
            raise ConnectionClosedError(endpoint_url=self.url, error=exc) from exc
        if reusable and not self._closed and len(self._idle) < self._maxsize:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _checkout(self) -> _Connection:
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return self._connect()
            if not connection.dropped():
                return connection
            connection.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        try:
            # Small requests go out at once, not after the peer's delayed ACK (urllib3's
            # default too).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._address[0])
        except ssl.SSLError as exc:
            sock.close()
            raise SSLError(endpoint_url=self.url, error=exc) from exc
        except OSError as exc:
            sock.close()
            raise EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
        sock.settimeout(self._read_timeout)
        return _Connection(sock)


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if not line.endswith(b"\n"):
        # b"": the server closed the connection (before or in the middle of a line).
        raise ValueError("connection closed before a whole answer" if not line else "line")
    return line


def _read_answer(reader: BinaryIO) -> tuple[Answer, bool]:
    """The answer on ``reader``, and whether its connection can carry another request."""
    status_line = _line(reader)
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {status_line[:40]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    lowered: dict[str, str] = {}
    while (line := _line(reader)) not in (b"\r\n", b"\n"):
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"not a header: {line[:40]!r}")
        name, value = name.strip(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        lowered[name.lower()] = headers[name]
    reusable = lowered.get("connection", "").lower() != "close" and version == b"HTTP/1.1"
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        data = _chunked(reader)
    elif "content-length" in lowered:
        length = int(lowered["content-length"])
        data = reader.read(length)
        if len(data) != length:
            raise ValueError("connection closed in the middle of an answer")
    elif status in (204, 304) or 100 <= status < 200:
        data = b""
    else:  # the body ends where the connection does
        data, reusable = reader.read(), False
    return Answer(status, headers, data), reusable


def _chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(_line(reader).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n"):  # trailers
                pass
            return b"".join(parts)
        chunk = reader.read(size)
        if len(chunk) != size:
            raise ValueError("connection closed in the middle of an answer")
        parts.append(chunk)
        _line(reader)
