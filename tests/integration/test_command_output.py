"""What the commands print, read by a script: one key text, no wrapping through a pipe, a
closed pipe or Ctrl-C ends a command quietly with one line at most, and ``status`` that
cannot observe says so once (exit 2). Real processes on DynamoDB Local."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import ensure_state_table
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.codec import key_to_json
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.runner_process import write_config
from tests.support import FIELDS, REGIONS, STOPS_WITHIN_S, create_table, ctrl_c

US, EU, _ = REGIONS
EXECUTABLE = str(Path(sys.executable).parent / "dynamodb-replicator")
# longer than any terminal's default width: wrapping would split it
WIDE_KEY = "wide-" + "x" * 150


def environment(**changes: str) -> dict[str, str]:
    """The test's environment without COLUMNS (the commands must not depend on it)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(changes)
    return env


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment(**env),
    )


@pytest.fixture(scope="module")
def config(ddb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Table Wide in two regions; one item only in us-east-1, of a key wider than 80."""
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Wide", region=region)
        ensure_state_table(client, "output-state", region)
    item = {"pk": {"S": WIDE_KEY}, FIELDS.timestamp: {"N": str(int(time.time() * 1000))}}
    clients[US].put_item(TableName="Wide", Item=item)
    path = tmp_path_factory.mktemp("output") / "c.toml"
    endpoints = dict.fromkeys((US, EU), ddb_local.endpoint_url)
    yield write_config(path, ["Wide"], endpoints, state_table="output-state")


def test_keys_are_one_json_text_on_unwrapped_lines(config: Path) -> None:
    text = key_to_json({"pk": {"S": WIDE_KEY}})
    diff = command("diff", "--config", str(config), "--no-settle", "--progress", "off")
    assert diff.returncode == 1, diff.stderr
    assert f"    missing: {text}" in diff.stdout.splitlines()
    repair = command("repair", "--config", str(config), "--dry-run", "--force", "--progress", "off")
    assert repair.returncode == 0, repair.stderr
    lines = repair.stdout.splitlines()
    assert any(line.startswith(f"    {EU}: put {text} version ") for line in lines), lines
    as_json = command("repair", "--config", str(config), "--dry-run", "--force", "--output", "json")
    (table,) = json.loads(as_json.stdout)
    assert table["repair"]["samples"][0]["key"] == {"pk": {"S": WIDE_KEY}}


def test_a_closed_pipe_ends_a_command_quietly(config: Path) -> None:
    for args in (["status", "--output", "json"], ["diff", "--no-settle", "--progress", "off"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the command writes a line
        try:
            done = subprocess.run(
                [EXECUTABLE, args[0], "--config", str(config), *args[1:]],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
                env=environment(),
            )
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (141, ""), args


def test_status_without_credentials_says_so_once(config: Path, tmp_path: Path) -> None:
    nowhere = str(tmp_path / "none")
    env = environment(
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        AWS_CONFIG_FILE=nowhere,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.pop("AWS_ACCESS_KEY_ID")
    env.pop("AWS_SECRET_ACCESS_KEY")
    done = subprocess.run(
        [EXECUTABLE, "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and "no AWS credentials" in line


def _orders_everywhere(path: Path, ddb_local: DynamoDBLocal, **options: object) -> Path:
    """A config of table Orders in every region, all at DynamoDB Local."""
    return write_config(path, ["Orders"], dict.fromkeys(REGIONS, ddb_local.endpoint_url), **options)


def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The command fails (exit 2) with one line on stderr: that line."""
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


def test_status_before_any_runner_says_none_has_run(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = _orders_everywhere(tmp_path / "fresh.toml", ddb_local, state_table="never-made")
    error = _one_line_error(["status", "--config", str(fresh)], capsys)
    assert "no state table never-made in us-east-1: no runner has run there yet" in error, error
    assert "ResourceNotFoundException" not in error, error


def test_status_where_a_runner_never_ran_says_not_started_not_stuck(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ddb_local.endpoint_url
    half = _orders_everywhere(tmp_path / "half.toml", ddb_local, state_table="half-made")
    first = RegionSpec(REGIONS[0], endpoint)
    ensure_state_table(make_client("dynamodb", first), "half-made", first.name)  # one region
    assert main(["status", "--config", str(half)]) == 3
    out = capsys.readouterr().out
    assert "STUCK" not in out and "stuck:" not in out, out
    assert f"not started: Orders {REGIONS[1]} -> {REGIONS[0]}: no runner has run in" in out, out
    assert f"{REGIONS[1]}: no state table: no runner has run there yet" in out, out


def test_subscribe_at_a_dynamodb_only_endpoint_says_it_cannot_serve_lambda(
    ddb_local: DynamoDBLocal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _orders_everywhere(tmp_path / "local.toml", ddb_local)
    endpoint = ddb_local.endpoint_url
    error = _one_line_error(["subscribe", "--config", str(local), "--region", REGIONS[0]], capsys)
    assert f"both went to {endpoint}" in error and "serves only DynamoDB" in error, error


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """An endpoint that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener
    listener.close()


@pytest.mark.parametrize("name", ["diff", "repair"])
def test_an_interrupted_scan_says_so_and_exits_130_at_once(
    name: str,
    ddb_local: DynamoDBLocal,
    config: Path,
    tmp_path: Path,
    black_hole: socket.socket,
) -> None:
    """Ctrl-C while the command waits on a region that does not answer (its read timeout
    and retries would hold it for minutes): one line, exit 130, without waiting. Table
    Wide exists in us-east-1 (the ``config`` fixture), so the command gets as far as
    eu-west-1."""
    port = black_hole.getsockname()[1]
    regions = {US: ddb_local.endpoint_url, EU: f"http://127.0.0.1:{port}"}
    hanging = write_config(tmp_path / "hang.toml", ["Wide"], regions)
    force = ["--force"] if name == "repair" else []  # straight to the scan
    running = subprocess.Popen(
        [EXECUTABLE, name, "--config", str(hanging), "--progress", "off", *force],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        black_hole.settimeout(60)
        try:
            connection, _ = black_hole.accept()  # the command is waiting on eu-west-1 now
        except TimeoutError:
            running.kill()
            pytest.fail(f"{name} never reached eu-west-1: {running.communicate()}")
        assert running.poll() is None
        stopped_in = ctrl_c(running)
        out, err = running.communicate(timeout=30)
        connection.close()
    finally:
        running.kill()
    print(f"{name} exited {stopped_in:.2f} s after SIGINT")
    assert running.returncode == 130
    assert err.splitlines() == [
        f"interrupted: {name} stopped before it finished; run it again to start over"
    ], err
    assert out == ""
    assert stopped_in < STOPS_WITHIN_S


def test_narrow_terminal_width_wraps_no_line(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    """COLUMNS=40 (a narrow terminal's width, inherited through a pipe): version-items and
    add-region print every line whole, so a script parses them at any width."""
    endpoint = ddb_local.endpoint_url
    for region in (US, EU):
        client = make_client("dynamodb", RegionSpec(region, endpoint))
        create_table(client, "Narrow", region=region)
        client.put_item(TableName="Narrow", Item={"pk": {"S": WIDE_KEY}})  # no __timestamp
        ensure_state_table(client, "narrow-state", region)
    config = write_config(
        tmp_path / "narrow.toml",
        ["Narrow"],
        {US: endpoint, EU: endpoint},
        state_table="narrow-state",
    )
    for region in (US, EU):
        versioned = command(
            "version-items", "--config", str(config), "--region", region, "--timestamp", "5000",
            COLUMNS="40",
        )  # fmt: skip
        assert versioned.returncode == 0, versioned.stderr
        assert versioned.stderr.splitlines() == [
            "giving items without one __timestamp 5000: use the same in every other region "
            "(--timestamp 5000)"
        ]
        assert versioned.stdout.splitlines() == [
            f"Narrow in {region}: 1 versioned with __timestamp 5000, 0 already versioned, "
            "0 changed meanwhile (left as they are)"
        ]
    # Each region's item is now its own version, (5000, region): repair gives both the
    # winner's, so add-region's final diff finds one version (docs: existing system).
    repaired = command("repair", "--config", str(config), "--force", COLUMNS="40")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    new = REGIONS[2]
    added = command(
        "add-region", "--config", str(config), "--region", new, "--endpoint-url", endpoint,
        "--no-settle", COLUMNS="40",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    lines = added.stdout.splitlines()
    assert lines[0] == f"Narrow: created in {new}", lines
    assert f"{US}: replication into {new} will start where {US} stands" in lines
    assert any(re.fullmatch(rf"seeded \d+ shard positions for {new}", line) for line in lines)
    assert any(
        re.fullmatch(r"Narrow: copied in 1, copied out 0, already newer 0, .* items/s\)", line)
        for line in lines
    ), lines
    assert (
        f"added {new} to {config}: running runners pick it up within seconds and replay "
        "every change since the seeded positions into it"
    ) in lines
    assert lines[-1] == f"Narrow: {new} matches {US}, {EU}", lines
