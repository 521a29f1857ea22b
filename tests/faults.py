"""A fault-injecting HTTP proxy between the replicator and DynamoDB Local.

Each request (DynamoDB and DynamoDB Streams alike, told apart by X-Amz-Target) meets at most
one fault, drawn from a seeded random generator: a delay, a slow response, an HTTP 500, a
throttling error (ProvisionedThroughputExceededException or ThrottlingException), or a
dropped connection, either before the request reaches the server or after it was applied
(the client never learns that its write happened). ``seed`` makes a run replayable in the
kinds and rates of faults (thread scheduling still orders them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dynamodb_replicator.testing.local import free_port


@dataclass(frozen=True)
class FaultRates:
    delay: float = 0.05  # 0-200 ms before forwarding
    slow: float = 0.01  # 1.5 s before answering
    server_error: float = 0.03
    throttle: float = 0.03
    drop_before: float = 0.02
    drop_after: float = 0.02


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Connections a runner opens at once wait for their accept (socketserver's default
    # queue of 5 dropped the rest: connect timeouts that no fault injected), as a real
    # endpoint takes them.
    request_queue_size = 1024


class FaultProxy:
    def __init__(self, upstream_port: int, *, seed: int, rates: FaultRates | None = None) -> None:
        self.upstream_port = upstream_port
        self.rates = rates or FaultRates()
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.operations: Counter[tuple[str, str]] = Counter()  # (fault, operation)
        self.enabled = True
        self.port = free_port()
        self.server = _Server(("127.0.0.1", self.port), self._handler())

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
                            raise

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def do_POST(self) -> None:
                try:
                    self._forward()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up: nothing to answer

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                fault = proxy.draw(target)
                if fault == "delay":
                    time.sleep(proxy.random.random() * 0.2)
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
                    time.sleep(1.5)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
