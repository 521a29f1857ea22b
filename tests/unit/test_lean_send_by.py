"""The lean transport's send-by instant (``aws.http``): a request goes out within the
connect timeout of its call's start, or not at all, whatever took the time before the
send: a credentials refresh (before signing), the name's resolution, a TLS handshake
whose bytes trickle in. Past the instant the call raises ``ConnectTimeoutError`` (the one
error table: unreachable, nothing sent) and the server sees no request. Loopback servers
play the endpoint: ``test_lean_transport.Endpoint``, ``test_lean_http.RawServer`` and a
TLS server (a self-signed certificate made here) behind a relay that trickles its
answers; ``socket.getaddrinfo`` is replaced for the slow resolution, as review 4 does."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ConnectTimeoutError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.core.errors import UnreachableError

from .test_lean_http import (  # noqa: F401 (serving: a fixture)
    ANSWER,
    RawServer,
    Serve,
    keep_alive,
    read_request,
    serving,
)
from .test_lean_transport import Endpoint, endpoint, lean  # noqa: F401

CONNECT = 0.2  # the connect timeout, and so each call's budget before its send
SLOWER = CONNECT * 2  # longer than the budget: a refresh or a resolution that took too long


def _refreshing(delays: list[float]) -> RefreshableCredentials:
    """botocore's refreshing credentials (as a role's or a container's), each refresh
    taking the next of ``delays`` seconds; they expire within botocore's mandatory refresh
    window, so every call refreshes them before it signs."""

    def fetch() -> dict[str, Any]:
        threading.Event().wait(delays.pop(0))  # the provider's slowness itself
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {
            "access_key": "AKID",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }

    return RefreshableCredentials.create_from_metadata(fetch(), fetch, "test")


def test_a_credentials_refresh_longer_than_the_connect_timeout_sends_nothing(
    endpoint: Endpoint,  # noqa: F811 (the fixture imported above)
) -> None:
    """The refresh runs inside the call, before signing: it takes from the call's budget,
    so a call whose refresh outlasts the connect timeout gives up unsent, on a new
    connection and on a kept-alive one alike."""
    client = lean(endpoint, _refreshing([0.0, 0.0, SLOWER, SLOWER]), connect_timeout=CONNECT)
    client.put_item(TableName="T", Item={"pk": {"S": "k"}})
    # The state this test is about: a request went through, its connection is kept alive.
    assert len(endpoint.requests) == 1 and len(client._pool._idle) == 1
    with pytest.raises(ConnectTimeoutError) as reused:
        client.put_item(TableName="T", Item={"pk": {"S": "k"}})
    assert not client._pool._idle  # closed, not handed to the next call
    with pytest.raises(ConnectTimeoutError) as fresh:
        client.put_item(TableName="T", Item={"pk": {"S": "k"}})
    assert len(endpoint.requests) == 1
    for raised in (reused.value, fresh.value):
        error = translate(raised, "eu-west-1", "PutItem")
        assert isinstance(error, UnreachableError) and error.retryable


def test_a_name_resolved_after_the_connect_timeout_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
    serving: Callable[[Serve], RawServer],  # noqa: F811 (the fixture imported above)
) -> None:
    """Name resolution has no timeout of its own: a resolver that answers after the
    budget leaves no time to send, and the server is not even connected to."""
    server = serving(keep_alive)
    port = int(server.url.rsplit(":", 1)[1])
    resolved: list[float] = []

    def slow_resolver(*args: object, **kwargs: object) -> list[Any]:
        threading.Event().wait(SLOWER)  # the resolver's slowness itself
        resolved.append(time.monotonic())
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    pool = Pool("http://dynamodb.test", maxsize=1, connect_timeout=CONNECT, read_timeout=1.0)
    try:
        with pytest.raises(ConnectTimeoutError):
            pool.post(b"{}", {"Host": "dynamodb.test"})
    finally:
        pool.close()
    assert resolved  # the state this test is about: the name was resolved, late
    assert server.connections == 0


# A TLS endpoint on loopback, behind a relay that passes its bytes on one at a time.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TricklingTLS:
    """A TLS server that notes each request it reads whole, reached through a relay that
    passes the server's bytes to the client one every ``pause`` seconds (each well within
    a socket timeout: only a limit on the handshake as a whole cuts it short)."""

    def __init__(self, cert: Path, key: Path, pause: float) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.pause = pause
        self.requests: list[bytes] = []
        self.relayed = 0  # bytes the relay passed on to the client
        self.inner = socket.create_server(("127.0.0.1", 0))
        self.outer = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.outer.getsockname()[1]}"
        self.stopped = threading.Event()
        for target in (self._serve, self._relay):
            threading.Thread(target=target, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.inner.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    while head := read_request(conn):
                        self.requests.append(head)
                        conn.sendall(ANSWER)
            except OSError:
                continue

    def _relay(self) -> None:
        while True:
            try:
                client, _ = self.outer.accept()
            except OSError:
                return
            server = socket.create_connection(self.inner.getsockname())
            threading.Thread(target=self._pass, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pass, args=(server, client, self.pause), daemon=True
            ).start()

    def _pass(self, source: socket.socket, sink: socket.socket, pause: float) -> None:
        try:
            while data := source.recv(1 if pause else 65536):
                if pause:
                    if self.stopped.wait(pause):  # the trickle itself, cut short at close
                        return
                    self.relayed += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.stopped.set()
        self.inner.close()
        self.outer.close()


@pytest.fixture
def tls(certificate: tuple[Path, Path]) -> Iterator[Callable[[float], TricklingTLS]]:
    servers: list[TricklingTLS] = []

    def start(pause: float) -> TricklingTLS:
        servers.append(TricklingTLS(*certificate, pause))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_tls_handshake_that_trickles_past_the_connect_timeout_sends_nothing(
    tls: Callable[[float], TricklingTLS], certificate: tuple[Path, Path]
) -> None:
    """The handshake has what is left of the budget after the connect, as a whole: a
    server whose handshake bytes come one every 10 ms (each well within any timeout per
    read; the whole handshake would take seconds) does not get the request. The same
    server, not trickling, answers."""
    authority = str(certificate[0])
    # The budget is a second, not CONNECT: a loaded machine (load 25) took longer than
    # 0.2 s to reach the server's first handshake byte or finish a quick handshake; the
    # trickled handshake (one byte per 10 ms: its certificate alone) takes seconds.
    budget = 1.0
    quick = tls(0.0)
    pool = Pool(quick.url, maxsize=1, connect_timeout=budget, read_timeout=1.0, ca_certs=authority)
    assert pool.post(b"{}", {"Host": "127.0.0.1"}).status == 200
    pool.close()
    slow = tls(0.01)
    pool = Pool(slow.url, maxsize=1, connect_timeout=budget, read_timeout=1.0, ca_certs=authority)
    try:
        with pytest.raises(ConnectTimeoutError):
            pool.post(b"{}", {"Host": "127.0.0.1"})
    finally:
        pool.close()
    # The state this test is about: the handshake was under way when the budget ran out.
    assert slow.relayed > 0
    assert len(quick.requests) == 1 and not slow.requests
