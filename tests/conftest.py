"""Shared fixtures. Integration tests share one DynamoDB Local per session; each test module
gets a database of its own in it (its own access key id)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dynamodb_replicator.awslambda import handler as lambda_handler
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.moto_server import MotoServer
from tests.runner_process import RunnerProcess

# Hypothesis's per-example deadline is a timing assertion: on a loaded 2-core machine it fails
# tests whose logic passed. Timing belongs in benchmarks, so no test has one.
settings.register_profile("replicator", deadline=None)
settings.load_profile("replicator")

# DynamoDB Local accepts any credentials made of letters and digits.
# Tests that send SIGINT stand for a user pressing Ctrl-C at a terminal, where the command
# runs in the foreground with SIGINT at its default. A suite started as a background job
# (CI may do that) inherits SIGINT ignored, and so would every command it starts: Python
# then installs no KeyboardInterrupt. A handler of our own is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.pop("AWS_PROFILE", None)


INTEGRATION = Path(__file__).parent / "integration"


# The modules that load DynamoDB Local hardest (faults with kills, add-region under load):
# with two test processes (``make test PYTEST_FLAGS="-n 2 --dist loadgroup"``) they run one
# after the other in one process, never at the same time.
HEAVY = {"test_faults.py", "test_residency.py", "test_add_region.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration gets the ``integration`` marker (it talks to real
    servers): ``pytest -m "not integration"`` runs the rest alone. Each module is one
    ``xdist_group`` (its module fixtures stay in one process), the heavy ones one together."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
        group = "heavy" if item.path.name in HEAVY else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _cli_log_handlers_removed() -> Iterator[None]:
    """A test that runs the CLI in this process leaves the root logger writing to that test's
    captured stderr (observe/logs.configure), closed once the test ends: a later test's
    runner thread logging before its own CLI call then prints "--- Logging error ---" into
    that test's output. The CLI's handlers go with the test that installed them (pytest's
    own capture handlers are subclasses, and stay)."""
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def ddb_server() -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the session: a start costs seconds of a busy JVM (25 modules
    paid it once each). Use ``ddb_local``, which isolates modules from each other."""
    with DynamoDBLocal() as server:
        yield server


@pytest.fixture(scope="module")
def ddb_local(ddb_server: DynamoDBLocal, request: pytest.FixtureRequest) -> Iterator[DynamoDBLocal]:
    """The session's DynamoDB Local, as a database of this module's own: DynamoDB Local keeps
    one database per access key id and region, so a module-unique key id gives each module
    its own tables and state tables, as a server of its own did. Runner subprocesses inherit
    the key from the environment. The Lambda handler's clients, built once per configuration
    (the same endpoint in every module), are dropped so that none signs with another module's
    key."""
    key = "".join(c for c in request.module.__name__ if c.isalnum())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", key)
        lambda_handler._replicator.cache_clear()
        yield ddb_server
        lambda_handler._replicator.cache_clear()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server for the session; use ``moto``, which empties it first."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """moto's server with nothing in it (reset, not restarted): no state leaks between tests."""
    return moto_server.reset()


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    """Runner processes a test starts; at the end, those still alive get SIGTERM (they
    release their leases and worker ids), SIGKILL if that does not end them."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.close()
