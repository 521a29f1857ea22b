"""The docs cannot drift from the code: every config key, command (with the exit codes it
returns), metric and environment variable is described; the dashboards use only metrics the
code exports; the guarantees page names tests that exist."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dynamodb_replicator import reference
from dynamodb_replicator.cli.exits import EXIT_CODES, exit_codes
from dynamodb_replicator.cli.main import build_parser
from dynamodb_replicator.core.defaults import METRICS_NAMESPACE
from dynamodb_replicator.deploy.template import TemplateOptions, build_template
from dynamodb_replicator.runner.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GRAFANA = ROOT / "dashboards" / "grafana" / "replicator.json"


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_reference" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hooks: Any = _hooks()


def test_every_name_the_code_has_is_described_and_nothing_else() -> None:
    assert hooks.problems() == []


def test_a_config_key_without_a_description_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    described = hooks.descriptions()
    del described["config"]["page_limit"]
    monkeypatch.setattr(hooks, "descriptions", lambda: described)
    missing = "config: page_limit has no description in docs/_reference/descriptions.yml"
    assert missing in hooks.problems()


def test_the_reference_pages_show_every_key_command_and_metric() -> None:
    keys, regions = hooks.config_keys(), hooks.region_keys()
    for key in reference.config_keys():
        assert f"| `{key.name}` |" in keys
    for key in reference.region_keys():
        assert f"| `{key.name}` |" in regions
    commands = hooks.commands()
    for command in reference.commands():
        assert f"## {command.name}\n" in commands
    metrics = hooks.runner_metrics() + hooks.lambda_metrics()
    for metric in reference.runner_metrics() + reference.lambda_metrics():
        assert f"| `{metric.name}` |" in metrics
    variables = hooks.environment()
    for name in reference.environment_variables():
        assert f"| `{name}` |" in variables


def test_the_command_index_lists_every_command_of_the_parser() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    rows = [line for line in hooks.command_index().splitlines() if line.startswith("| [`")]
    assert {row.split("`")[1] for row in rows} == set(subcommands.choices)
    assert "<!-- reference:command-index -->" in (DOCS / "reference" / "commands.md").read_text()


def test_the_home_page_links_every_reference_page() -> None:
    home = (DOCS / "index.md").read_text()
    for page in ("reference/commands.md", "reference/config.md", "reference/metrics.md"):
        assert f"]({page})" in home


def test_config_keys_come_from_the_parser() -> None:
    names = [k.name for k in reference.config_keys()]
    assert names[:3] == ["tables", "regions", "table_names"]
    regions = [{"name": "eu-west-1"}, {"name": "us-east-1"}]
    assert parse_config({"tables": ["Orders"], "regions": regions, "page_limit": 10})
    assert "page_limit" in names and "park_after_seconds" in names


def _returned_codes(module: ModuleType) -> set[int]:
    """The exit codes a command module returns: int literals and module-level int constants
    in the return statements of its ``run`` and ``_run*`` functions."""
    tree = ast.parse(inspect.getsource(module))
    runs = [
        f
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef) and (f.name == "run" or f.name.startswith("_run"))
    ]
    constants = {
        name: value
        for name in dir(module)
        if isinstance(value := getattr(module, name), int) and name.isupper()
    }
    codes: set[int] = set()
    for node in (n for f in runs for n in ast.walk(f)):
        if isinstance(node, ast.Return) and node.value is not None:
            for part in ast.walk(node.value):
                if isinstance(part, ast.Constant) and type(part.value) is int:
                    codes.add(part.value)
                elif isinstance(part, ast.Name) and part.id in constants:
                    codes.add(constants[part.id])
    return codes


def test_every_command_declares_the_exit_codes_it_returns() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        module = sys.modules[sub.get_default("run").__module__]
        assert name in EXIT_CODES, name
        assert _returned_codes(module) <= set(exit_codes(name)), name


def test_help_shows_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--help"])
    help_text = capsys.readouterr().out
    assert "exit status:\n  0   nothing stuck" in help_text
    assert "\n  1   a pair is stuck" in help_text


def _grafana_metrics() -> set[str]:
    dashboard = json.loads(GRAFANA.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert expressions
    return {n for e in expressions for n in re.findall(r"dynamodb_replicator_\w+", e)}


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    used = _grafana_metrics()
    assert used <= reference.exported_names()
    wanted = {
        "lag_seconds",
        "backlog_records",
        "applied_total",
        "stale_total",
        "failed_total",
        "parked_records",
        "region_reachable",
        "contract_violations_total",
    }
    assert {f"dynamodb_replicator_{n}" for n in wanted} <= used


def _cloudwatch_metrics(per_target: bool) -> list[list[Any]]:
    config = parse_config(
        {
            "tables": ["Orders", "Users"],
            "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}, {"name": "ap-south-1"}],
        }
    )
    template = build_template(config, TemplateOptions("eu-west-1", per_target=per_target))
    body = template["Resources"]["ReplicatorDashboard"]["Properties"]["DashboardBody"]
    widgets = json.loads(body["Fn::Sub"])["widgets"]
    return [row for w in widgets for row in w["properties"]["metrics"]]


@pytest.mark.parametrize("per_target", [False, True])
def test_the_cloudwatch_dashboard_uses_only_emitted_metrics(per_target: bool) -> None:
    rows = _cloudwatch_metrics(per_target)
    ours = {row[1] for row in rows if row[0] == METRICS_NAMESPACE}
    assert ours <= {m.name for m in reference.lambda_metrics()}
    wanted = {"Applied", "Stale", "Failed", "LagSeconds", "ConflictsLost", "ContractViolations"}
    assert wanted <= ours
    functions = {row[3] for row in rows if row[0] == "AWS/Lambda"}
    expected = 2 if per_target else 1
    assert len(functions) == expected
    assert all(f.startswith("${NamePrefix}-eu-west-1") for f in functions)
    pairs = {(row[3], row[7]) for row in rows if row[1] == "Failed"}
    assert pairs == {(t, r) for t in ("Orders", "Users") for r in ("us-east-1", "ap-south-1")}


_TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def test_the_guarantees_page_names_tests_that_exist() -> None:
    text = (DOCS / "concepts" / "guarantees.md").read_text()
    found = _TEST_REFERENCE.findall(text)
    assert len(found) > 30
    for path, name in found:
        source = ROOT / path
        assert source.is_file(), path
        if name:
            assert re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE), f"{path}::{name}"


def test_every_guarantee_row_names_a_test() -> None:
    text = (DOCS / "concepts" / "guarantees.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| ") and not r.startswith("| guarantee")]
    assert rows
    for row in rows:
        assert _TEST_REFERENCE.search(row.rsplit("|", 2)[1]), row


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives a page's headings (the toc extension's slugs)."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}


def test_the_readme_is_a_short_front_door_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) < 200
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.startswith("make demo") and "\nmake test" in first_block
    links = _LINK.findall(readme)
    assert len(links) > 20
    for target, anchor in links:
        page = ROOT / target
        assert page.exists(), target
        if anchor:
            assert anchor in _anchors(page), f"{target}#{anchor}"
