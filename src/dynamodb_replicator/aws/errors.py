"""Translate botocore errors into the replicator's error tree, once, at the boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from dynamodb_replicator.core.errors import (
    ConfigError,
    ReplicatorError,
    ServerError,
    TargetError,
    ThrottledError,
    UnreachableError,
)

__all__ = ["call_translated", "error_code", "translate"]

_THROTTLING = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "Throttling",
}
_SERVER = {"InternalServerError", "ServiceUnavailable", "TransactionConflictException"}
_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, region: str, action: str) -> ReplicatorError:
    """The replicator's error for a botocore exception raised while doing ``action``."""
    where = f"{action} in {region}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = exc.response.get("Error", {}).get("Message", "")
        text = f"{where}: {code}: {message}"
        if code in _THROTTLING:
            return ThrottledError(text, region=region)
        if code in _SERVER or status >= 500:
            return ServerError(text, region=region)
        if code in _CREDENTIALS:
            return ConfigError(f"{where}: credentials rejected ({code}); check the AWS credentials")
        return TargetError(text, region=region)
    if isinstance(
        exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
    ):
        return UnreachableError(f"{where}: endpoint unreachable: {exc}", region=region)
    if isinstance(exc, NoCredentialsError):
        return ConfigError(f"{where}: no AWS credentials found (environment, profile or role)")
    if isinstance(exc, BotoCoreError):
        return UnreachableError(f"{where}: {exc}", region=region)
    raise exc


def call_translated(region: str, action: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    """``call(**kwargs)`` with botocore errors translated."""
    try:
        return call(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region, action) from exc
