"""A fault-injecting HTTP proxy between the replicator and DynamoDB Local.

Each request (DynamoDB and DynamoDB Streams alike, told apart by X-Amz-Target) meets at most
one fault, drawn from a seeded random generator: a delay, a slow response, an HTTP 500, a
throttling error (ProvisionedThroughputExceededException or ThrottlingException), or a
dropped connection, either before the request reaches the server or after it was applied
(the client never learns that its write happened). ``seed`` makes a run replayable in the
kinds and rates of faults (thread scheduling still orders them).

A client that goes away leaves the proxy a reset or a broken pipe to meet: after a drop of
its own, a client that timed out (a slow answer), a runner killed. Those are expected:
counted in ``disconnects``, never printed. Any other error a request meets (DynamoDB Local
refusing or cutting the proxy's own connection included) is printed with its traceback the
first time its kind is met, and counted in ``unexpected``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dynamodb_replicator.testing.local import free_port
from tests.runner_process import write_config

DELAY_MAX_SECONDS = 0.2  # a delay fault waits up to this long before forwarding
SLOW_SECONDS = 1.5  # a slow answer comes this long after the server's

LEASE_SECONDS = 5.0
"""The fault runs' lease: short, so that a killed runner's shards move on quickly."""

REQUEST_TIMEOUT_SECONDS = 0.5
"""The fault runs' request timeout: longer than an injected delay and than a busy DynamoDB
Local's answers, shorter than a slow answer, which it is there to cut. Derived from the
lease (80% of its margin) it was 1.0 s: every slow answer held its key's chain, and so its
page, a second, and every lost answer was waited out a second."""


@dataclass(frozen=True)
class FaultRates:
    delay: float = 0.05  # 0-DELAY_MAX_SECONDS before forwarding
    slow: float = 0.01  # SLOW_SECONDS before answering
    server_error: float = 0.03
    throttle: float = 0.03
    drop_before: float = 0.02
    drop_after: float = 0.02


# What the client's going away raises where the proxy reads from or writes to it.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class UpstreamError(Exception):
    """The proxy's own exchange with DynamoDB Local failed: never the client's doing (a
    reset there must not be counted as a client's)."""


class _Server(ThreadingHTTPServer):
    """Hands each error a request met to ``met`` instead of printing it."""

    daemon_threads = True
    # Connections a runner opens at once wait for their accept (socketserver's default
    # queue of 5 dropped the rest: connect timeouts that no fault injected), as a real
    # endpoint takes them.
    request_queue_size = 1024

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.proxy = proxy

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            self.proxy.met(error)


def kind_of(error: BaseException) -> str:
    """The error's type and where its root cause was raised: what "once" is counted by."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    frames = traceback.extract_tb(root.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(root).__name__}{where}"


class FaultProxy:
    def __init__(self, upstream_port: int, *, seed: int, rates: FaultRates | None = None) -> None:
        self.upstream_port = upstream_port
        self.rates = rates or FaultRates()
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()  # clients gone, by error type
        self.unexpected: Counter[str] = Counter()  # any other error, by ``kind_of``
        self.operations: Counter[tuple[str, str]] = Counter()  # (fault, operation)
        self.enabled = True
        self.port = free_port()
        self.server = _Server(self.port, self._handler(), self)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def draw(self, operation: str = "") -> str:
        """The fault the next request (of ``operation``, as X-Amz-Target names it) meets."""
        with self.lock:
            if not self.enabled:
                return "none"
            roll = self.random.random()
            fault = "none"
            for name, rate in vars(self.rates).items():
                if roll < rate:
                    fault = name
                    break
                roll -= rate
            self.counts[fault] += 1
            self.operations[(fault, operation.rpartition(".")[2])] += 1
            return fault

    def by_operation(self) -> dict[str, dict[str, int]]:
        """Requests per operation, by the fault each met ("none": forwarded as it was)."""
        with self.lock:
            found: dict[str, dict[str, int]] = {}
            for (fault, operation), count in sorted(self.operations.items()):
                found.setdefault(operation, {})[fault] = count
            return found

    def met(self, error: BaseException) -> None:
        """Count an error a request met; print an unexpected one the first time its kind
        is met."""
        if isinstance(error, CLIENT_GONE):
            with self.lock:
                self.disconnects[type(error).__name__] += 1
            return
        kind = kind_of(error)
        with self.lock:
            self.unexpected[kind] += 1
            first = self.unexpected[kind] == 1
        if first:
            print(f"fault proxy: unexpected {kind} (counted from now on):", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # An answer goes out as written: headers and body are two writes, and with
            # Nagle's algorithm the body waited for the client's delayed ACK of the headers
            # (40 ms on every request, far beyond the delays the fault mix injects).
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, kind: str, message: str) -> None:
                body = json.dumps(
                    {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            upstream: http.client.HTTPConnection | None = None

            def _exchange(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
                """The request sent on to DynamoDB Local over this connection's own kept-alive
                connection there (a new one per request cost each a TCP handshake on both
                sides). Sent again on a new one only when a kept one turned out closed by
                DynamoDB Local: that one never reached it."""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                while True:
                    reused = self.upstream is not None
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(
                            "127.0.0.1", proxy.upstream_port, timeout=30
                        )
                    try:
                        self.upstream.request("POST", self.path, body=body, headers=headers)
                        response = self.upstream.getresponse()
                        return response, response.read()
                    except (OSError, http.client.HTTPException) as exc:
                        self.upstream.close()
                        self.upstream = None
                        stale = isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError)
                        if not (reused and stale):
                            raise UpstreamError(
                                f"DynamoDB Local at port {proxy.upstream_port}"
                            ) from exc

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                fault = proxy.draw(target)
                if fault == "delay":
                    time.sleep(proxy.random.random() * DELAY_MAX_SECONDS)
                elif fault == "server_error":
                    return self._answer(500, "InternalServerError", "injected")
                elif fault == "throttle":
                    kind = (
                        "ThrottlingException"
                        if "Streams" in target
                        else "ProvisionedThroughputExceededException"
                    )
                    return self._answer(400, kind, "injected")
                elif fault == "drop_before":
                    return self._drop()
                response, payload = self._exchange(body)
                if fault == "drop_after":  # applied upstream, but the client never hears it
                    return self._drop()
                if fault == "slow":
                    time.sleep(SLOW_SECONDS)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def fault_config(
    path: Path, tables: Sequence[str], endpoint_url: str, regions: Sequence[str]
) -> Path:
    """The runner's config for a fault run: every region through the proxy at
    ``endpoint_url``, the fault runs' lease and request timeout."""
    return write_config(
        path,
        tables,
        dict.fromkeys(regions, endpoint_url),
        lease_timeout_seconds=LEASE_SECONDS,
        request_timeout_seconds=REQUEST_TIMEOUT_SECONDS,
    )
