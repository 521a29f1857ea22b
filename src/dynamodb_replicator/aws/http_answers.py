"""Reading an HTTP/1.1 answer for ``aws.http``: its status line, its headers split on
``:``, and ``Content-Length`` (or chunked) bytes of body.

An interim answer (1xx: ``100 Continue``, asked or not) is read past, as ``http.client``
reads past it: the answer is the final one. Whatever does not parse as an answer (a line
too long, a length no answer has, the connection closed midway) raises ValueError, which
``aws.http`` reports as a closed connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["Answer", "read_answer"]

# A status line or header line longer than this is no DynamoDB answer.
_MAX_LINE = 65536
# Nor is a body longer than this (BatchGetItem's, the largest, is up to 16 MiB of items):
# a length past it is malformed, not a buffer to allocate (nor one past a C ssize_t).
_MAX_BODY = 1 << 28
# Interim answers read past before one is final; more is a server talking nonsense.
_MAX_INTERIM = 16


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, headers (a repeated header's values joined by ", ", as
    urllib3 does), body."""

    status: int
    headers: Mapping[str, str]
    data: bytes


def read_answer(reader: BinaryIO) -> tuple[Answer, bool]:
    """The final answer on ``reader`` (interim 1xx answers read past), and whether its
    connection can carry another request as far as the answer says (``Connection``, the
    version, how its body ends)."""
    for _ in range(_MAX_INTERIM + 1):  # the interim answers, then the final one
        version, status, headers, lowered = _head(reader)
        if status == 101:
            raise ValueError("switching protocols, which no request asked for")
        if not 100 <= status < 200:
            break
    else:
        raise ValueError("interim answers without end")
    options = {option.strip() for option in lowered.get("connection", "").lower().split(",")}
    reusable = "close" not in options and version == b"HTTP/1.1"
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        data = _chunked(reader)
    elif "content-length" in lowered:
        data = _exactly(reader, _length(lowered["content-length"], 10))
    elif status in (204, 304):
        data = b""
    else:  # the body ends where the connection does
        data, reusable = reader.read(), False
    return Answer(status, headers, data), reusable


def _head(reader: BinaryIO) -> tuple[bytes, int, dict[str, str], dict[str, str]]:
    """An answer's version, status, headers and headers by lowercased name."""
    head = _buffered_head(reader)
    lines: Iterable[str]
    if head is None:
        status_line, lines = _line(reader), _lines(reader)
    else:
        status_line, lines = head[0].encode("latin-1"), head[1:]
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {status_line[:40]!r}")
    status = _status(rest)
    headers: dict[str, str] = {}
    lowered: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header: {line.encode('latin-1')[:40]!r}")
        name, value = name.strip(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        lowered[name.lower()] = headers[name]
    return version, status, headers, lowered


def _status(rest: bytes) -> int:
    """The status code opening ``rest`` (the status line past its version): three ASCII
    digits, 100 to 999, ended by a space or the line's end, as ``http.client`` requires
    (``int`` alone takes a sign, an underscore, spaces: ``-1 `` would read as a success)."""
    code, end = rest[:3], rest[3:4]
    # bytes.isdigit is ASCII digits only.
    if not code.isdigit() or code.startswith(b"0") or end not in (b"", b" ", b"\r", b"\n"):
        raise ValueError(f"not a status: {rest[:40]!r}")
    return int(code)


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if not line.endswith(b"\n"):
        # b"": the server closed the connection (before or in the middle of a line).
        raise ValueError("connection closed before a whole answer" if not line else "line")
    return line


def _buffered_head(reader: BinaryIO) -> list[str] | None:
    """The answer's status line and header lines, taken off ``reader`` in one go when they
    are all in its buffer (a DynamoDB answer's head comes in one segment), each line
    ended by CRLF; None (nothing taken) otherwise: then they are read line by line."""
    buffered = reader.peek(_MAX_LINE)  # type: ignore[attr-defined]  # a BufferedReader
    end = buffered.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffered[:end]
    if head.count(b"\n") != head.count(b"\r\n"):
        return None  # a line ended by LF alone: the line reader's way
    reader.read(end + 4)  # from the buffer: no system call
    lines: list[str] = head.decode("latin-1").split("\r\n")
    return lines


def _lines(reader: BinaryIO) -> Iterator[str]:
    """Header lines read one at a time, up to the empty line that ends them."""
    while (line := _line(reader)) not in (b"\r\n", b"\n"):
        yield line.decode("latin-1")


def _length(text: str | bytes, base: int) -> int:
    """A body or chunk length: at most ``_MAX_BODY`` (``int`` alone takes a sign, and
    ``reader.read`` a length past a C ssize_t as OverflowError)."""
    length = int(text, base)
    if not 0 <= length <= _MAX_BODY:
        raise ValueError(f"a length no answer has: {length}")
    return length


def _exactly(reader: BinaryIO, length: int) -> bytes:
    data = reader.read(length)
    if len(data) != length:
        raise ValueError("connection closed in the middle of an answer")
    return data


def _chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size = _length(_line(reader).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n"):  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise ValueError(f"a length no answer has: {total}")
        parts.append(_exactly(reader, size))
        # A chunk's data ends at its size: anything but the line end there is data past
        # it (a malformed answer), not to be thrown away with the line.
        if _line(reader) != b"\r\n":
            raise ValueError("a chunk longer than its size")
