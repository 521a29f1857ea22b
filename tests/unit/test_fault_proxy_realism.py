"""The fault proxy (tests/faults.py) injects its fault mix and nothing else: with no fault
drawn it behaves as a real endpoint would. Three ways it did not, each of which made the
soak measure the proxy rather than the runner: it took at most five connections waiting
for their accept (a restarted runner opens a hundred at once: connect timeouts no fault
injected), it held each answer's body until the client acknowledged its headers (Nagle's
algorithm against the client's delayed ACK: 40 ms on every request), and it opened a new
connection to DynamoDB Local for every request."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.faults import FaultProxy, FaultRates

NO_FAULTS = FaultRates(0, 0, 0, 0, 0, 0)


class Upstream(ThreadingHTTPServer):
    """A stand-in for DynamoDB Local: answers every POST with ``{}``; counts the
    connections it was opened."""

    daemon_threads = True

    def __init__(self) -> None:
        self.connections = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections += 1

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def upstream_and_proxy() -> Iterator[tuple[Upstream, FaultProxy]]:
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = FaultProxy(upstream.port, seed=1, rates=NO_FAULTS).start()
    try:
        yield upstream, proxy
    finally:
        proxy.stop()
        upstream.shutdown()
        upstream.server_close()


def post(connection: http.client.HTTPConnection) -> dict[str, object]:
    connection.request(
        "POST", "/", body=b"{}", headers={"X-Amz-Target": "DynamoDB_20120810.GetItem"}
    )
    answer = connection.getresponse()
    found = json.loads(answer.read())
    assert answer.status == 200 and isinstance(found, dict)
    return found


def test_a_burst_of_connections_waits_for_its_accept_instead_of_timing_out() -> None:
    # Not started: nothing accepts, so every connection waits in the listen queue, as a
    # burst does while the proxy's thread is busy elsewhere.
    proxy = FaultProxy(1, seed=1, rates=NO_FAULTS)
    opened: list[socket.socket] = []
    try:
        for _ in range(100):
            # Well under the first SYN retransmission (1 s): a dropped SYN times out here.
            opened.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5))
    except TimeoutError:
        pass
    finally:
        for sock in opened:
            sock.close()
        proxy.server.server_close()
    assert len(opened) == 100


def test_the_proxy_sends_each_answer_at_once() -> None:
    with upstream_and_proxy() as (_upstream, proxy):
        served = proxy.server.RequestHandlerClass
        nodelay: list[int] = []

        class Watched(served):  # type: ignore[valid-type,misc]
            def setup(self) -> None:
                super().setup()
                nodelay.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        proxy.server.RequestHandlerClass = Watched
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        assert post(connection) == {}
        connection.close()
    assert nodelay and all(nodelay)


def test_the_requests_of_one_client_connection_share_one_upstream_connection() -> None:
    with upstream_and_proxy() as (upstream, proxy):
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        for _ in range(10):
            assert post(connection) == {}
        connection.close()
        assert upstream.connections == 1
