"""Shared fixtures. Integration tests get a fresh DynamoDB Local per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import RunnerProcess

# Hypothesis's per-example deadline is a timing assertion: on a loaded 2-core machine it fails
# tests whose logic passed. Timing belongs in benchmarks, so no test has one.
settings.register_profile("replicator", deadline=None)
settings.load_profile("replicator")

# DynamoDB Local accepts any credentials made of letters and digits.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.pop("AWS_PROFILE", None)


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration gets the ``integration`` marker (it talks to real
    servers): ``pytest -m "not integration"`` runs the rest alone."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def ddb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as server:
        yield server


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    """Runner processes a test starts; at the end, those still alive get SIGTERM (they
    release their leases and worker ids), SIGKILL if that does not end them."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.close()
