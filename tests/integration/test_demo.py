"""``make demo`` runs to the end, converges, and leaves no server behind."""

from __future__ import annotations

import subprocess

import pytest

from dynamodb_replicator.cli.main import main


def test_demo_converges_and_cleans_up(capsys: pytest.CaptureFixture[str]) -> None:
    before = subprocess.run(
        ["pgrep", "-f", "DynamoDBLocal.jar"], capture_output=True, text=True, check=False
    )
    assert main(["demo"]) == 0
    output = capsys.readouterr().out
    assert "All three regions hold identical items: the expected winners." in output
    assert "order-2" in output and "(deleted)" in output
    assert "conflict log" in output and " won " in output and " lost " in output
    after = subprocess.run(
        ["pgrep", "-f", "DynamoDBLocal.jar"], capture_output=True, text=True, check=False
    )
    assert after.stdout.split() == before.stdout.split()
