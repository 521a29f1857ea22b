"""Backoff schedule and the Lambda's environment settings."""

from __future__ import annotations

import threading

import pytest

from dynamodb_replicator.awslambda.settings import settings_from_env
from dynamodb_replicator.core.errors import ConfigError, TargetError, ThrottledError
from dynamodb_replicator.core.policy import LastWriterWins, PreferredRegion
from dynamodb_replicator.core.replicator import MissingTimestamp
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.settings import NamedPolicy


def test_retries_throttling_with_growing_capped_delays() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 5:
            raise ThrottledError("slow down")
        return "ok"

    backoff = Backoff(attempts=8, base=0.1, cap=0.5, rng=lambda low, high: high)
    assert call_with_retries(flaky, backoff, sleep=sleeps.append) == "ok"
    assert sleeps == [0.1, 0.2, 0.4, 0.5]


def test_gives_up_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    def always() -> None:
        raise ThrottledError("slow down")

    with pytest.raises(ThrottledError):
        call_with_retries(always, Backoff(attempts=3, rng=lambda a, b: 0.0), sleep=sleeps.append)
    assert len(sleeps) == 2


def test_does_not_retry_permanent_errors() -> None:
    sleeps: list[float] = []

    def denied() -> None:
        raise TargetError("AccessDenied")

    with pytest.raises(TargetError):
        call_with_retries(denied, Backoff(), sleep=sleeps.append)
    assert sleeps == []


def test_env_settings() -> None:
    settings = settings_from_env(
        {
            "AWS_REGION": "eu-west-1",
            "REPLICATOR_REGIONS": "us-east-1, eu-west-1,ap-southeast-1",
            "REPLICATOR_TARGET_REGIONS": "us-east-1",
            "REPLICATOR_ENDPOINT_URLS": "us-east-1=http://127.0.0.1:8000",
            "REPLICATOR_MISSING_TIMESTAMP": "skip",
            "REPLICATOR_POLICY": "preferred-region:us-east-1",
        }
    )
    assert settings.source == "eu-west-1"
    assert settings.regions == ("eu-west-1", "us-east-1")
    assert settings.endpoints == {"us-east-1": "http://127.0.0.1:8000"}
    assert settings.replication.missing_timestamp is MissingTimestamp.SKIP
    assert isinstance(settings.replication.policy, PreferredRegion)


def test_custom_policy_by_import_path() -> None:
    settings = settings_from_env(
        {
            "AWS_REGION": "eu-west-1",
            "REPLICATOR_REGIONS": "us-east-1",
            "REPLICATOR_POLICY": "dynamodb_replicator.core.policy:LastWriterWins",
        }
    )
    # The loaded policy keeps its spec, so a template can render it back.
    assert settings.replication.policy == NamedPolicy(
        "dynamodb_replicator.core.policy:LastWriterWins", LastWriterWins()
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REPLICATOR_REGIONS": "us-east-1"}, "SOURCE_REGION"),
        ({"AWS_REGION": "eu-west-1"}, "REPLICATOR_REGIONS"),
        ({"AWS_REGION": "eu-west-1", "REPLICATOR_REGIONS": "a1,a1"}, "twice"),
        ({"AWS_REGION": "x", "REPLICATOR_REGIONS": "y", "REPLICATOR_MAX_WORKERS": "0"}, "positive"),
        ({"AWS_REGION": "x", "REPLICATOR_REGIONS": "y", "REPLICATOR_POLICY": "nope"}, "policy"),
        ({"AWS_REGION": "x", "REPLICATOR_REGIONS": "y", "REPLICATOR_ENDPOINT_URLS": "y"}, "url"),
        ({"AWS_REGION": "x", "REPLICATOR_REGIONS": "y", "REPLICATOR_TARGET_REGIONS": "z"}, "z"),
        (
            {"AWS_REGION": "x", "REPLICATOR_REGIONS": "y", "REPLICATOR_MISSING_TIMESTAMP": "x"},
            "fail",
        ),
    ],
)
def test_bad_env_is_a_clear_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_a_set_stop_event_ends_the_retries_at_once() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        stop.set()  # the process begins to shut down during the first attempt
        raise ThrottledError("slow down")

    with pytest.raises(ThrottledError):
        call_with_retries(down, Backoff(attempts=8, base=10.0, cap=10.0), stop=stop)
    assert calls == [1]
