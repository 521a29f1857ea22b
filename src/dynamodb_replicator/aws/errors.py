"""Translate botocore errors into the replicator's error tree: one table, one context manager.

Every adapter call runs inside ``with translated(region, action):``; what botocore raises
comes out as (``core.errors``, ``core.streams``)::

    botocore                                        replicator
    AssumeRoleFailed (STS, for a region's role; a ClientError, matched first)
    ├── throttling, HTTP 5xx                    ->  as a ClientError below (a retry helps)
    └── any other code (AccessDenied, ...)      ->  AssumeRoleError (names role and region)
    ClientError, by error code
    ├── ConditionalCheckFailedException         ->  ConditionFailedError (.item: ALL_OLD)
    ├── TransactionCanceledException
    │   ├── a reason ConditionalCheckFailed     ->  TransactionCanceledError (.reasons)
    │   ├── a reason throttling                 ->  ThrottledError
    │   └── a reason TransactionConflict        ->  ServerError
    ├── ResourceNotFoundException, NoSuchEntity ->  NotFoundError
    ├── ResourceInUseException,
    │   ResourceConflictException,
    │   EntityAlreadyExists                     ->  ResourceInUseError
    ├── ExpiredIteratorException                ->  ExpiredIteratorError
    ├── TrimmedDataAccessException              ->  TrimmedDataError
    ├── throttling (ThrottlingException, ...)   ->  ThrottledError
    ├── InternalServerError, ServiceUnavailable,
    │   TransactionConflictException            ->  ServerError
    ├── rejected credentials                    ->  ConfigError
    ├── AccessDenied(Exception), Unauthorized…  ->  AccessDeniedError
    ├── ValidationException                     ->  ItemRejectedError
    └── any other code                          ->  ServerError if HTTP 5xx, else TargetError
    EndpointConnectionError, ConnectTimeoutError -> UnreachableError(request_sent=False)
    ReadTimeoutError, ConnectionClosedError     ->  UnreachableError (it may still land)
    NoCredentialsError                          ->  ConfigError
    any other BotoCoreError                     ->  UnreachableError

The codes cover DynamoDB, DynamoDB Streams, Lambda and IAM, so deploy code can use the
same table. Every code-specific type is a TargetError (or a stream error), so a caller
that does not expect an outcome sees the failure it saw before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

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
    AccessDeniedError,
    AssumeRoleError,
    CancellationReason,
    ConditionFailedError,
    ConfigError,
    ItemRejectedError,
    NotFoundError,
    ReplicatorError,
    ResourceInUseError,
    ServerError,
    TargetError,
    ThrottledError,
    TransactionCanceledError,
    UnreachableError,
)
from dynamodb_replicator.core.streams import ExpiredIteratorError, TrimmedDataError

__all__ = ["TABLE", "AssumeRoleFailed", "error_code", "translate", "translated"]

# (what was being done "ACTION in REGION", the region, the ClientError) -> our error
Rule = Callable[[str, str, ClientError], ReplicatorError]


class AssumeRoleFailed(ClientError):  # type: ignore[misc]
    """STS's error answer to the AssumeRole call for the role of ``region``: raised where a
    client's credentials are refreshed (``aws.clients``), so it surfaces from whatever call
    needed them."""

    def __init__(self, exc: ClientError, *, region: str, role_arn: str) -> None:
        super().__init__(exc.response, exc.operation_name)
        self.region = region
        self.role_arn = role_arn


def error_code(exc: ClientError) -> str:
    """The error code of a ClientError ("" when the response has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _text(where: str, exc: ClientError) -> str:
    return f"{where}: {error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"


def _target(kind: type[TargetError]) -> Rule:
    return lambda where, region, exc: kind(_text(where, exc), region=region)


def _credentials(where: str, region: str, exc: ClientError) -> ReplicatorError:
    code = error_code(exc)
    return ConfigError(f"{where}: credentials rejected ({code}); check the AWS credentials")


def _condition_failed(where: str, region: str, exc: ClientError) -> ReplicatorError:
    return ConditionFailedError(_text(where, exc), region=region, item=exc.response.get("Item"))


def _canceled(where: str, region: str, exc: ClientError) -> ReplicatorError:
    reasons = [
        CancellationReason(r.get("Code"), r.get("Item"))
        for r in exc.response.get("CancellationReasons", [])
    ]
    codes = [r.code for r in reasons]
    # A false condition decides the outcome even when another operation was throttled.
    if "ConditionalCheckFailed" in codes:
        return TransactionCanceledError(_text(where, exc), region=region, reasons=reasons)
    if "ThrottlingError" in codes or "ProvisionedThroughputExceeded" in codes:
        return ThrottledError(f"transaction throttled: {codes}", region=region)
    if "TransactionConflict" in codes:
        return ServerError(f"transaction conflict: {codes}", region=region)
    return TargetError(_text(where, exc), region=region)


def _codes(rule: Rule, *codes: str) -> dict[str, Rule]:
    return dict.fromkeys(codes, rule)


TABLE: Mapping[str, Rule] = {
    "ConditionalCheckFailedException": _condition_failed,
    "TransactionCanceledException": _canceled,
    "ValidationException": _target(ItemRejectedError),
    **_codes(_target(NotFoundError), "ResourceNotFoundException", "NoSuchEntity"),
    **_codes(
        _target(ResourceInUseError),
        "ResourceInUseException",
        "ResourceConflictException",
        "EntityAlreadyExists",
    ),
    "ExpiredIteratorException": lambda where, _r, _e: ExpiredIteratorError(
        f"{where}: iterator expired"
    ),
    "TrimmedDataAccessException": lambda where, _r, exc: TrimmedDataError(_text(where, exc)),
    **_codes(
        _target(ThrottledError),
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "Throttling",
    ),
    **_codes(
        _target(ServerError),
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    ),
    **_codes(
        _credentials,
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
    ),
    **_codes(
        _target(AccessDeniedError),
        "AccessDeniedException",
        "AccessDenied",
        "UnauthorizedOperation",
    ),
}
"""Error code -> the rule that builds the replicator's error (see the module docstring)."""

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)

_NOT_SENT = (EndpointConnectionError, ConnectTimeoutError)


def _client_error(where: str, region: str, exc: ClientError) -> ReplicatorError:
    rule = TABLE.get(error_code(exc))
    if rule is not None:
        return rule(where, region, exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    kind = ServerError if status >= 500 else TargetError
    return kind(_text(where, exc), region=region)


def _role_refused(where: str, region: str, exc: AssumeRoleFailed) -> ReplicatorError:
    found = _client_error(where, region, exc)
    if found.retryable:
        return found
    return AssumeRoleError(
        _text(f"cannot assume role {exc.role_arn} for region {exc.region}", exc),
        region=exc.region,
        role_arn=exc.role_arn,
    )


def translate(exc: Exception, region: str, action: str) -> ReplicatorError:
    """The replicator's error for a botocore exception raised while doing ``action``."""
    where = f"{action} in {region}"
    if isinstance(exc, AssumeRoleFailed):
        return _role_refused(where, region, exc)
    if isinstance(exc, ClientError):
        return _client_error(where, region, exc)
    if isinstance(exc, _UNREACHABLE):
        # No connection was made: the request never left (the lean transport raises these
        # same classes on its connect failures, aws/http.py). Every other failure may have
        # come after the send, so the write may still land (``core.errors.may_still_land``).
        sent = not isinstance(exc, _NOT_SENT)
        text = f"{where}: endpoint unreachable: {exc}"
        return UnreachableError(text, region=region, request_sent=sent)
    if isinstance(exc, NoCredentialsError):
        return ConfigError(f"{where}: no AWS credentials found (environment, profile or role)")
    if isinstance(exc, BotoCoreError):
        return UnreachableError(f"{where}: {exc}", region=region)
    raise exc


@contextlib.contextmanager
def translated(region: str, action: str) -> Iterator[None]:
    """Run the block with botocore's errors translated (``raise ... from`` the original)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region, action) from exc
