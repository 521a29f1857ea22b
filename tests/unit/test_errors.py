"""The error-translation table: each botocore error comes out as the replicator's error,
with the outcome types carrying what the response said."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from dynamodb_replicator.aws.errors import TABLE, translate, translated
from dynamodb_replicator.core.errors import (
    AccessDeniedError,
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


def client_error(code: str, status: int = 400, **extra: Any) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "it said no"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, "AnOperation")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ResourceNotFoundException", NotFoundError),
        ("NoSuchEntity", NotFoundError),
        ("ResourceInUseException", ResourceInUseError),
        ("EntityAlreadyExists", ResourceInUseError),
        ("ExpiredIteratorException", ExpiredIteratorError),
        ("TrimmedDataAccessException", TrimmedDataError),
        ("ProvisionedThroughputExceededException", ThrottledError),
        ("ThrottlingException", ThrottledError),
        ("InternalServerError", ServerError),
        ("TransactionConflictException", ServerError),
        ("ExpiredTokenException", ConfigError),
        ("AccessDeniedException", AccessDeniedError),
        ("ValidationException", ItemRejectedError),
    ],
)
def test_codes_map_to_their_error_type(code: str, kind: type[ReplicatorError]) -> None:
    error = translate(client_error(code), "eu-west-1", "PutItem on T")
    assert type(error) is kind
    assert "PutItem on T in eu-west-1" in str(error)


def test_outcome_types_are_failures_to_callers_that_do_not_expect_them() -> None:
    for code in ("ConditionalCheckFailedException", "ResourceNotFoundException"):
        error = translate(client_error(code), "eu-west-1", "x")
        assert isinstance(error, TargetError) and not error.retryable


def test_an_unknown_code_with_a_5xx_status_is_a_server_error() -> None:
    assert type(translate(client_error("Odd", status=503), "r", "x")) is ServerError
    assert type(translate(client_error("Odd", status=400), "r", "x")) is TargetError


def test_a_failed_condition_carries_the_item_it_met() -> None:
    item = {"pk": {"S": "a"}}
    error = translate(client_error("ConditionalCheckFailedException", Item=item), "r", "x")
    assert isinstance(error, ConditionFailedError) and error.item == item
    bare = translate(client_error("ConditionalCheckFailedException"), "r", "x")
    assert isinstance(bare, ConditionFailedError) and bare.item is None


def canceled(*reasons: dict[str, Any]) -> ClientError:
    return client_error("TransactionCanceledException", CancellationReasons=list(reasons))


def test_a_canceled_transaction_says_which_condition_failed() -> None:
    tomb = {"pk": {"S": "a"}}
    error = translate(
        canceled({"Code": "ConditionalCheckFailed", "Item": tomb}, {"Code": "None"}), "r", "x"
    )
    assert isinstance(error, TransactionCanceledError)
    assert error.codes == ("ConditionalCheckFailed", "None")
    assert error.reasons[0].item == tomb


def test_a_transaction_canceled_by_throttling_or_conflict_is_retryable() -> None:
    throttled = translate(canceled({"Code": "None"}, {"Code": "ThrottlingError"}), "r", "x")
    conflict = translate(canceled({"Code": "TransactionConflict"}), "r", "x")
    assert type(throttled) is ThrottledError and throttled.retryable
    assert type(conflict) is ServerError and conflict.retryable


def test_transport_errors() -> None:
    unreachable = translate(EndpointConnectionError(endpoint_url="http://x"), "r", "x")
    assert type(unreachable) is UnreachableError
    assert type(translate(NoCredentialsError(), "r", "x")) is ConfigError


def test_translated_raises_from_the_original_and_lets_other_errors_through() -> None:
    original = client_error("ResourceNotFoundException")
    with pytest.raises(NotFoundError) as raised, translated("eu-west-1", "DescribeTable T"):
        raise original
    assert raised.value.__cause__ is original and raised.value.region == "eu-west-1"
    with pytest.raises(KeyError), translated("eu-west-1", "x"):
        raise KeyError("not ours")


# Every code the table knows, with the error it must become and whether it is retried.
EVERY_CODE: dict[str, tuple[type[ReplicatorError], bool]] = {
    "ConditionalCheckFailedException": (ConditionFailedError, False),
    "TransactionCanceledException": (TargetError, False),  # no reasons: nothing to retry
    "ValidationException": (ItemRejectedError, False),
    "ResourceNotFoundException": (NotFoundError, False),
    "NoSuchEntity": (NotFoundError, False),
    "ResourceInUseException": (ResourceInUseError, False),
    "ResourceConflictException": (ResourceInUseError, False),
    "EntityAlreadyExists": (ResourceInUseError, False),
    "ExpiredIteratorException": (ExpiredIteratorError, True),
    "TrimmedDataAccessException": (TrimmedDataError, False),
    "ProvisionedThroughputExceededException": (ThrottledError, True),
    "ThrottlingException": (ThrottledError, True),
    "RequestLimitExceeded": (ThrottledError, True),
    "LimitExceededException": (ThrottledError, True),
    "Throttling": (ThrottledError, True),
    "InternalServerError": (ServerError, True),
    "ServiceUnavailable": (ServerError, True),
    "TransactionConflictException": (ServerError, True),
    "UnrecognizedClientException": (ConfigError, False),
    "InvalidSignatureException": (ConfigError, False),
    "MissingAuthenticationToken": (ConfigError, False),
    "ExpiredTokenException": (ConfigError, False),
    "AccessDeniedException": (AccessDeniedError, False),
    "AccessDenied": (AccessDeniedError, False),
    "UnauthorizedOperation": (AccessDeniedError, False),
}


def test_every_code_becomes_its_error_retried_or_not_and_says_where() -> None:
    assert set(TABLE) == set(EVERY_CODE)  # a new rule gets its line above
    for code, (kind, retryable) in EVERY_CODE.items():
        error = translate(client_error(code), "eu-west-1", "PutItem on T")
        assert (type(error), error.retryable) == (kind, retryable), code
        assert str(error).startswith("PutItem on T in eu-west-1: "), code
        if isinstance(error, TargetError):
            assert error.region == "eu-west-1" and code in str(error), code
