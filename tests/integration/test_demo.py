"""``make demo`` runs to the end, converges, and leaves no server behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from dynamodb_replicator.cli.main import main


def servers_of_this_process() -> list[str]:
    """The DynamoDB Local servers this test process started (the demo runs in it). Servers
    of other processes on the machine come and go on their own: not this test's business."""
    found = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "DynamoDBLocal.jar"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.split()


def test_demo_converges_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    before = servers_of_this_process()
    assert main(["demo"]) == 0
    output = capsys.readouterr().out
    assert "All three regions hold identical items: the expected winners." in output
    assert "order-2" in output and "(deleted)" in output
    assert "conflict log" in output and " won " in output and " lost " in output
    assert servers_of_this_process() == before
