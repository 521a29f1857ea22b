"""AWS Signature Version 4 for the lean transport's one request shape: ``POST /`` with a
JSON body and a fixed set of headers (``aws.lean``).

botocore's ``SigV4Auth`` signs any request: it parses the URL and walks email-style header
objects on every call, about 250 us of CPU per request on the benchmark machine, half of
the runner's budget per replicated write. The algorithm is the same here, specialised to
one request shape, and the signing key (four HMACs) is derived once per day, region,
service and secret key. ``tests/unit/test_sigv4.py`` holds every signature equal to
``SigV4Auth``'s for the same request and time.

A request's HMAC is SHA-256 over the signing key's inner and outer pads (RFC 2104),
their hash states computed once per key and copied per request: OpenSSL's one-shot
``HMAC`` (``hmac.digest``) fetches its algorithms anew on every call and releases the
GIL around it, a hand-over of the GIL per write that cost about 5% of the runner's CPU
under load (``make profile``); a copied hash state of a short text does neither.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Signer", "amz_date"]

_ALGORITHM = "AWS4-HMAC-SHA256"


def amz_date(epoch_seconds: float) -> str:
    """The X-Amz-Date form of a time: ``20261201T233242Z`` (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_seconds))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


# RFC 2104's pads, as translation tables of the key's bytes.
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))
_BLOCK = 64  # SHA-256's block size: a signing key (32 bytes) is padded to it


@dataclass(frozen=True, slots=True)
class _Key:
    """A signing key and the SHA-256 states of its inner and outer pads (never updated:
    each request updates a copy)."""

    secret: str
    day: str
    key: bytes
    inner: Any
    outer: Any

    @classmethod
    def of(cls, secret: str, day: str, key: bytes) -> _Key:
        padded = key.ljust(_BLOCK, b"\0")
        inner = hashlib.sha256(padded.translate(_INNER))
        outer = hashlib.sha256(padded.translate(_OUTER))
        return cls(secret, day, key, inner, outer)

    def hmac(self, text: bytes) -> str:
        """HMAC-SHA256 of ``text`` under this key, in hex."""
        inner = self.inner.copy()
        inner.update(text)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())


@dataclass(frozen=True, slots=True)
class _Shape:
    """The canonical headers of one set of request headers, all but X-Amz-Date and the
    session token (the parts every request of an operation shares): the lines sorted
    before X-Amz-Date (``before``), between it and X-Amz-Security-Token (``between``),
    after the token (``after``), and the SignedHeaders list."""

    before: str
    between: str
    after: str
    signed: str


# Shapes kept per signer: one per operation and token presence; more is a caller sending
# headers that vary, and the cache starts over rather than grow.
_MAX_SHAPES = 64


def _shape(headers: Mapping[str, str], host: str, token: bool) -> _Shape:
    signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    signed.pop("x-amz-date", None)  # set per request (below, as the request's own)
    if token:
        signed.pop("x-amz-security-token", None)
    signed["host"] = host
    names = sorted([*signed, "x-amz-date", *(["x-amz-security-token"] if token else [])])
    parts: list[list[str]] = [[]]
    for name in names:
        if name in ("x-amz-date", "x-amz-security-token") and name not in signed:
            parts.append([])
        else:
            parts[-1].append(f"{name}:{signed[name]}\n")
    lines = ["".join(part) for part in parts] + [""]
    return _Shape(lines[0], lines[1], lines[2], ";".join(names))


class Signer:
    """Signs ``POST /`` requests of one service in one region (``host`` as sent)."""

    def __init__(self, service: str, region: str, host: str) -> None:
        self.service = service
        self.region = region
        self.host = host
        self._key: _Key | None = None  # replaced whole: safe to share between threads
        # (headers, token or not) -> their shape; whichever thread makes one first
        # writes it (two equal shapes: either serves)
        self._shapes: dict[tuple[tuple[tuple[str, str], ...], bool], _Shape] = {}

    def _signing_key(self, secret: str, day: str) -> _Key:
        cached = self._key
        if cached is not None and cached.secret == secret and cached.day == day:
            return cached
        key = _hmac(("AWS4" + secret).encode(), day)
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        made = self._key = _Key.of(secret, day, key)
        return made

    def sign(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        access_key: str,
        secret_key: str,
        token: str | None,
        stamp: str,
    ) -> dict[str, str]:
        """The headers to add to a request with ``headers`` (every one of them is signed,
        with Host, X-Amz-Date and the session token) and ``body``, at time ``stamp``
        (``amz_date``): X-Amz-Date, X-Amz-Security-Token and Authorization."""
        added = {"X-Amz-Date": stamp}
        # The canonical form of the headers an operation always sends, made once: only
        # the time and the token differ between its requests.
        cache_key = (tuple(headers.items()), bool(token))
        shape = self._shapes.get(cache_key)
        if shape is None:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            shape = self._shapes[cache_key] = _shape(headers, self.host, bool(token))
        if token:
            added["X-Amz-Security-Token"] = token
            lines = (
                f"{shape.before}x-amz-date:{stamp}\n{shape.between}"
                f"x-amz-security-token:{token}\n{shape.after}"
            )
        else:
            lines = f"{shape.before}x-amz-date:{stamp}\n{shape.between}"
        canonical = f"POST\n/\n\n{lines}\n{shape.signed}\n{hashlib.sha256(body).hexdigest()}"
        day = stamp[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = (
            f"{_ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = self._signing_key(secret_key, day).hmac(to_sign.encode())
        added["Authorization"] = (
            f"{_ALGORITHM} Credential={access_key}/{scope}, "
            f"SignedHeaders={shape.signed}, Signature={signature}"
        )
        return added
