"""The lean transport's failures come out as botocore's, so the one error table translates
them: throttling, server errors, lost connections, timeouts (a real HTTP server on
loopback plays the failing endpoint)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from dynamodb_replicator.aws.errors import translate
from dynamodb_replicator.aws.lean import LeanClient
from dynamodb_replicator.aws.store import DynamoStore
from dynamodb_replicator.core.conditions import TRUE
from dynamodb_replicator.core.errors import (
    ConfigError,
    ReplicatorError,
    ServerError,
    ThrottledError,
    UnreachableError,
)
from dynamodb_replicator.core.retry import Backoff, call_with_retries

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


def json_answer(status: int, body: dict[str, Any]) -> Answer:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-amz-json-1.0")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def hang_up(handler: http.server.BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    handler.connection.close()


def stall(handler: http.server.BaseHTTPRequestHandler) -> None:
    time.sleep(1.0)  # past the client's read timeout
    json_answer(200, {})(handler)


class Endpoint:
    """A loopback HTTP server answering every POST with ``answer`` (settable)."""

    def __init__(self) -> None:
        self.answer: Answer = json_answer(200, {})
        self.requests: list[dict[str, str]] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.requests.append(dict(self.headers.items()))
                endpoint.answer(self)

            def log_message(self, *_: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


def lean(
    endpoint: Endpoint, credentials: Credentials | None = None, *, connect_timeout: float = 0.5
) -> LeanClient:
    config = Config(
        connect_timeout=connect_timeout, read_timeout=0.3, retries={"total_max_attempts": 1}
    )
    client = boto3.session.Session().client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=endpoint.url,
        config=config,
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    return LeanClient(client, credentials or Credentials("AKID", "secret", "token"))


def failure(client: LeanClient) -> ReplicatorError:
    """The translated error of a put through the lean transport; botocore's own client
    (the one it wraps) raises the same exception (type, or error code) for the same
    failure."""
    raised: list[Exception] = []
    for sender in (client, client.client):
        with pytest.raises((ClientError, BotoCoreError)) as caught:
            sender.put_item(TableName="T", Item={"pk": {"S": "k"}})
        raised.append(caught.value)
    ours, botocores = raised
    if isinstance(botocores, ClientError):  # botocore's is a modeled subclass, same code
        assert isinstance(ours, ClientError)
        assert ours.response["Error"] == botocores.response["Error"]
    else:
        assert type(ours) is type(botocores)
    return translate(raised[0], "eu-west-1", "PutItem")


def test_throttling_and_server_errors_are_retryable(endpoint: Endpoint) -> None:
    client = lean(endpoint)
    endpoint.answer = json_answer(
        400,
        {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow"},
    )
    throttled = failure(client)
    assert isinstance(throttled, ThrottledError) and throttled.retryable
    endpoint.answer = json_answer(500, {"__type": "InternalServerError", "message": "oops"})
    assert isinstance(failure(client), ServerError)
    endpoint.answer = json_answer(503, {})  # no error code: the HTTP status decides
    assert isinstance(failure(client), ServerError)


def test_a_lost_connection_or_a_stalled_answer_is_unreachable(endpoint: Endpoint) -> None:
    client = lean(endpoint)
    endpoint.answer = hang_up
    lost = failure(client)
    assert isinstance(lost, UnreachableError) and lost.retryable
    endpoint.answer = stall
    began = time.perf_counter()
    stalled = failure(client)
    assert isinstance(stalled, UnreachableError)
    # The client config's read timeout (0.3 s) bounds the call, not the server's 1 s.
    assert time.perf_counter() - began < 0.9


def test_a_closed_port_is_unreachable(endpoint: Endpoint) -> None:
    client = lean(endpoint)
    endpoint.close()
    assert isinstance(failure(client), UnreachableError)


def test_the_store_retries_through_the_lean_transport(endpoint: Endpoint) -> None:
    """The one backoff retries what the transport raised: a throttled call, then success."""
    answers = [
        json_answer(400, {"__type": "ProvisionedThroughputExceededException", "message": ""}),
        json_answer(200, {}),
    ]

    def in_turn(handler: http.server.BaseHTTPRequestHandler) -> None:
        answers.pop(0)(handler)

    endpoint.answer = in_turn
    store = DynamoStore(lean(endpoint), "eu-west-1")
    result = call_with_retries(
        lambda: store.put("T", {"pk": {"S": "k"}}, TRUE), Backoff(base=0.001)
    )
    assert result.applied and not answers and len(endpoint.requests) == 2


def test_requests_are_signed_with_the_current_credentials(endpoint: Endpoint) -> None:
    credentials = Credentials("AKID1", "secret", "token1")
    client = lean(endpoint, credentials)
    client.put_item(TableName="T", Item={"pk": {"S": "k"}})
    credentials.access_key, credentials.token = "AKID2", "token2"  # a refresh
    client.put_item(TableName="T", Item={"pk": {"S": "k"}})
    first, second = endpoint.requests
    assert "Credential=AKID1/" in first["Authorization"]
    assert first["X-Amz-Security-Token"] == "token1"
    assert "Credential=AKID2/" in second["Authorization"]
    assert second["X-Amz-Security-Token"] == "token2"
    assert first["X-Amz-Target"] == "DynamoDB_20120810.PutItem"


def test_no_credentials_is_a_config_error(endpoint: Endpoint) -> None:
    client = lean(endpoint)
    client._credentials = None
    with pytest.raises(NoCredentialsError) as raised:
        client.put_item(TableName="T", Item={})
    assert isinstance(translate(raised.value, "eu-west-1", "PutItem"), ConfigError)
    assert not endpoint.requests
