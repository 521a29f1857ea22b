"""``make demo`` runs to the end, converges, and leaves no server behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from dynamodb_replicator.cli.main import main


def servers_started_here() -> list[str]:
    """DynamoDB Local processes that are children of this test process (the demo starts
    its server as one). Not every such process on the machine: other test runs start and
    stop their own meanwhile."""
    found = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "DynamoDBLocal.jar"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.split()


def test_demo_converges_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    before = servers_started_here()
    assert main(["demo"]) == 0
    output = capsys.readouterr().out
    assert "All three regions hold identical items: the expected winners." in output
    assert "order-2" in output and "(deleted)" in output
    assert "conflict log" in output and " won " in output and " lost " in output
    assert servers_started_here() == before
