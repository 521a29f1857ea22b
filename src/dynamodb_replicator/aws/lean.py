"""A lean transport for the runner's hot calls, behind a botocore client's own interface.

A botocore call costs about 0.9 ms of CPU on the benchmark machine (event hooks, parameter
walking, parsing by model, a generic signer), twice the runner's budget per replicated
write. ``LeanClient`` wraps a botocore client and sends its hot calls itself:

    DynamoDB          PutItem, DeleteItem, BatchGetItem; GetItem, UpdateItem (state table)
    DynamoDB Streams  GetRecords
    anything else     the wrapped botocore client, unchanged

From botocore it keeps everything but the sending: the credentials object (refreshing,
assumed roles included: ``aws.clients``), the resolved endpoint, the region, the service
model's target prefix and JSON version, and the client's config (pool size, connect and
read timeouts: one place, ``aws.clients._config``). A request is signed by ``aws.sigv4``,
encoded and decoded by ``aws.wire`` (orjson) in boto3's shapes, and sent by ``aws.http``
(keep-alive HTTP/1.1 for this one request shape) with no retries of its own, within the
connect timeout of the call's start (signing, a credentials refresh, name resolution,
connects and TLS all count) or not at all. Failures come out as the botocore exceptions
botocore raises for them (``ClientError``, ``EndpointConnectionError``,
``ConnectTimeoutError``, ``ReadTimeoutError``, ``ConnectionClosedError``, ...), so callers
translate them with the one error table (``aws.errors``) and retry them with the one
backoff (``core.retry``).

Where a proxy is configured, or the endpoint has a path, every call goes to botocore.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import botocore.httpsession
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

from dynamodb_replicator.aws import wire
from dynamodb_replicator.aws.clients import region_session, session_client
from dynamodb_replicator.aws.http import Pool
from dynamodb_replicator.aws.sigv4 import Signer, amz_date
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.ports import Clock

__all__ = ["HOT_CALLS", "LeanClient", "lean_possible", "make_lean_client"]

HOT_CALLS: Mapping[str, Mapping[str, str]] = {
    "dynamodb": {
        "put_item": "PutItem",
        "delete_item": "DeleteItem",
        "batch_get_item": "BatchGetItem",
        # The state table's per-page and per-second calls (checkpoints, heartbeats, leases).
        "get_item": "GetItem",
        "update_item": "UpdateItem",
    },
    "dynamodbstreams": {"get_records": "GetRecords"},
}
"""Per service: the client methods the lean transport sends, and their operation names."""


def lean_possible(client: Any) -> bool:
    """Whether the lean transport can carry ``client``'s hot calls: a plain endpoint (no
    path) reached without a proxy (botocore handles proxies, the lean transport does not)."""
    config = client.meta.config
    path = urllib.parse.urlsplit(client.meta.endpoint_url).path
    return path in ("", "/") and not config.proxies and not urllib.request.getproxies()


def _pool(client: Any) -> Pool:
    config = client.meta.config
    url = client.meta.endpoint_url
    return Pool(
        url,
        maxsize=config.max_pool_connections,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        ca_certs=botocore.httpsession.get_cert_path(True) if url.startswith("https:") else None,
    )


def _host(url: str) -> str:
    """The Host header botocore signs: the netloc without a default port."""
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


class LeanClient:
    """``client`` (a botocore DynamoDB or DynamoDB Streams client) with its hot calls sent
    by the lean transport, signed with ``credentials`` (None: no credentials were found,
    and a hot call raises NoCredentialsError as botocore would)."""

    def __init__(
        self, client: Any, credentials: Credentials | None, clock: Clock | None = None
    ) -> None:
        meta = client.meta
        model = meta.service_model
        self.client = client
        self.hot = HOT_CALLS.get(model.service_name, {})
        self._credentials = credentials
        self._clock = clock or SystemClock()
        self._url = meta.endpoint_url
        self._target = model.metadata["targetPrefix"]
        self._content_type = f"application/x-amz-json-{model.metadata['jsonVersion']}"
        self._signer = Signer(model.signing_name, meta.region_name, _host(self._url))
        self._pool = _pool(client)
        # (whole second, its X-Amz-Date): formatted once a second, not once a request
        self._stamp: tuple[int, str] = (-1, "")

    def __getattr__(self, name: str) -> Any:
        operation = self.hot.get(name)
        if operation is None:
            return getattr(self.client, name)

        def hot_call(**params: Any) -> dict[str, Any]:
            return self.call(operation, params)

        # Kept on the instance: the next lookup of a hot call finds it without this method
        # (called once per write otherwise).
        self.__dict__[name] = hot_call
        return hot_call

    def close(self) -> None:
        """Close the pooled connections (of both transports)."""
        self._pool.close()
        self.client.close()

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``operation`` with boto3's keyword arguments ``params``; boto3's answer.
        The request goes out within the connect timeout of this call's start, or not at
        all (``aws.http``): a credentials refresh before signing takes from that budget."""
        send_by = self._pool.send_by()
        body = wire.encode(params)
        headers = {
            "Content-Type": self._content_type,
            "X-Amz-Target": f"{self._target}.{operation}",
        }
        headers.update(self._signature(headers, body))
        headers["Host"] = self._signer.host
        response = self._pool.post(body, headers, send_by=send_by)
        if response.status >= 300:
            raise wire.client_error(operation, response.status, response.data, response.headers)
        found = wire.decode(operation, response.data)
        found["ResponseMetadata"] = wire.metadata(response.status, response.headers)
        return found

    def _signature(self, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        if self._credentials is None:
            raise NoCredentialsError()
        # Refreshes (and assumes the role) when due; AssumeRoleFailed surfaces from here.
        frozen = self._credentials.get_frozen_credentials()
        now = self._clock.now()
        stamp = self._stamp
        if stamp[0] != int(now):
            stamp = self._stamp = (int(now), amz_date(now))  # replaced whole: thread-safe
        return self._signer.sign(
            headers,
            body,
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            token=frozen.token,
            stamp=stamp[1],
        )


def make_lean_client(
    service: str,
    region: RegionSpec,
    *,
    pool: int = 32,
    profile: str | None = None,
    timeout: float = defaults.TOOL_REQUEST_TIMEOUT_SECONDS,
    session: Any = None,
) -> Any:
    """``make_client``'s client, its hot calls on the lean transport where it can carry
    them (``lean_possible``); the same session's credentials sign both transports, and both
    take their timeouts from the same ``timeout``. ``session``: as ``make_client``'s."""
    session = session or region_session(region, profile, timeout)
    client = session_client(session, service, region, pool=pool, timeout=timeout)
    if service not in HOT_CALLS or not lean_possible(client):
        return client
    return LeanClient(client, session.get_credentials())
