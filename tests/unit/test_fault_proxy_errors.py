"""The fault proxy (tests/faults.py) counts the resets and broken pipes its clients leave it
to meet (its own drops, a client that timed out, a runner killed) instead of printing a
traceback for each, and still prints an error it does not expect, once for each kind."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from dynamodb_replicator.testing.local import free_port
from tests.faults import FaultProxy, FaultRates
from tests.support import poll

NO_FAULTS = FaultRates(delay=0, slow=0, server_error=0, throttle=0, drop_before=0, drop_after=0)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    # Nothing listens upstream: a request that reaches the forwarding step is refused there.
    proxy = FaultProxy(free_port(), seed=1, rates=NO_FAULTS).start()
    yield proxy
    proxy.stop()


def reset_mid_request(port: int) -> None:
    """A client that sends half a request line and resets its connection (RST, as a killed
    process's or a timed-out client's socket may): the proxy meets the reset reading it."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"POST / HTT")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def post(port: int) -> bytes:
    """One whole request; what the proxy answers before it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        return client.recv(65536)


def test_a_client_reset_is_counted_without_a_traceback(
    proxy: FaultProxy, capfd: pytest.CaptureFixture[str]
) -> None:
    reset_mid_request(proxy.port)
    poll(lambda: proxy.disconnects or proxy.unexpected, "the proxy to meet the reset", 30)
    # The state this test is about: the proxy met the client's reset, and counted it.
    assert proxy.disconnects == {"ConnectionResetError": 1} and not proxy.unexpected
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


def test_an_unexpected_error_is_printed_once_and_counted(
    proxy: FaultProxy, capfd: pytest.CaptureFixture[str]
) -> None:
    assert post(proxy.port) == b""  # DynamoDB Local refused the proxy: no answer
    assert post(proxy.port) == b""
    # The state this test is about: both requests met the refusal upstream.
    poll(lambda: sum(proxy.unexpected.values()) == 2, "both refusals counted", 30)
    assert not proxy.disconnects  # the upstream's error is not taken for the client's
    err = capfd.readouterr().err
    # One report, its traceback included (the refusal under the proxy's UpstreamError).
    assert err.count("fault proxy: unexpected ConnectionRefusedError") == 1, err
    assert "Traceback" in err and "UpstreamError" in err, err
