"""The tool's surface read from the code: config keys, commands with their options and exit
codes, metrics, environment variables. The docs' reference pages are rendered from these
(``docs/hooks.py``), so a key, command or metric added to the code appears there by itself,
and a test fails while it has no description.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import Metric

from dynamodb_replicator.awslambda.emf import batch_emf
from dynamodb_replicator.cli.exits import exit_codes
from dynamodb_replicator.cli.main import build_parser
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.lag import Ages
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.runner import config
from dynamodb_replicator.runner.metrics import RunnerMetrics
from dynamodb_replicator.testing.clock import ManualClock

__all__ = [
    "Command",
    "ConfigKey",
    "MetricInfo",
    "Option",
    "commands",
    "config_keys",
    "environment_variables",
    "exported_names",
    "lambda_metrics",
    "region_keys",
    "runner_metrics",
]

PACKAGE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """A key of the runner's TOML config; ``kind`` and ``default`` as the parser has them."""

    name: str
    kind: str
    default: str


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a command, as its ``--help`` shows it."""

    flags: str
    help: str
    required: bool


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: its one-line help, options and exit codes."""

    name: str
    help: str
    options: tuple[Option, ...]
    exit_codes: dict[int, str]


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A metric: its name as exported, type (or unit), labels (or dimensions) and help."""

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


def _structured_keys() -> list[str]:
    """The top-level keys ``parse_config`` accepts besides ``_OPTIONAL`` (``tables``,
    ``regions``, tables of tables): the config's own list of them, so a key added there is
    listed too."""
    return [k for k in config._STRUCTURED if k not in config._OPTIONAL]


def config_keys() -> list[ConfigKey]:
    """Every top-level key of the runner's config: ``tables`` and ``regions`` first."""
    order = {"tables": 0, "regions": 1}
    structured = sorted(_structured_keys(), key=lambda k: order.get(k, 2))
    kinds = {"tables": "list", config._REQUEST: "float"}
    keys = [ConfigKey(name, kinds.get(name, "table"), "") for name in structured]
    for name, (kind, default) in config._OPTIONAL.items():
        keys.append(ConfigKey(name, kind.__name__, _toml(default)))
    return keys


def region_keys() -> list[ConfigKey]:
    """Every key of a ``[[regions]]`` entry."""
    known = ["name", "endpoint_url", "role_arn", "external_id", "session_name"]
    names = [k for k in known if k in config._REGION_KEYS]
    names += sorted(set(config._REGION_KEYS) - set(names))
    session = _toml(defaults.ROLE_SESSION_NAME)
    return [ConfigKey(n, "str", session if n == "session_name" else "") for n in names]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _options(parser: argparse.ArgumentParser) -> Iterator[Option]:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(action.option_strings) or str(action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            flags += f" {action.metavar or action.dest.upper()}"
        yield Option(flags, action.help or "", bool(action.required))


def commands() -> list[Command]:
    """Every subcommand of ``dynamodb-replicator``, in ``--help`` order."""
    parser = build_parser()
    found: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append(Command(name, helps[name], tuple(_options(sub)), exit_codes(name)))
    return found


def _labels(metric: Metric, extra: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    declared: tuple[str, ...] = getattr(metric, "_labelnames", ())
    if declared:
        return declared
    if metric.name in extra:
        return extra[metric.name]
    seen = {k for s in metric.samples for k in s.labels if k != "le"}
    return tuple(sorted(seen))


def runner_metrics() -> list[MetricInfo]:
    """Every metric the runner's ``/metrics`` serves (names as exported: counters end in
    ``_total``)."""
    metrics = RunnerMetrics(
        lambda: [],
        worker="--worker-id",
        clock=ManualClock(0.0),  # the metrics are read only for their names
        parked=lambda: {("T", "s"): 1},
        reachable=lambda: {"r": True},
        retries=lambda: {"r": 1},
    )
    metrics.lag_observer("T", "s")("t", 0.1)
    metrics.count_violations("T", "s", ["kept-timestamp"])
    found = []
    for metric in metrics.registry.collect():
        suffix = "_total" if metric.type == "counter" else ""
        labels = _labels(metric, {})
        found.append(MetricInfo(metric.name + suffix, metric.type, labels, metric.documentation))
    return found


def lambda_metrics() -> list[MetricInfo]:
    """Every EMF metric the Lambda function emits (a batch that emits all of them)."""
    result = BatchResult({"s": TargetResult("s"), "t": TargetResult("t")})
    lines = batch_emf(defaults.METRICS_NAMESPACE, "T", "s", result, ages=Ages(1.0, 1.0), now=0.0)
    found: dict[str, MetricInfo] = {}
    for line in lines:
        spec = json.loads(line)["_aws"]["CloudWatchMetrics"][0]
        dimensions = tuple(spec["Dimensions"][0])
        for metric in spec["Metrics"]:
            found[metric["Name"]] = MetricInfo(metric["Name"], metric["Unit"], dimensions, "")
    return list(found.values())


def exported_names() -> set[str]:
    """Every series name a Prometheus query may use: counters with ``_total``, histograms'
    ``_bucket``, ``_sum`` and ``_count``."""
    names: set[str] = set()
    for metric in runner_metrics():
        if metric.kind == "histogram":
            names |= {f"{metric.name}{s}" for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(metric.name)
    return names


_VARIABLE = re.compile(
    r"^(?:REPLICATOR_[A-Z][A-Z_]*|DYNAMODB_(?:REPLICATOR|LOCAL)_[A-Z_]+|AWS_REGION)$"
)


@cache
def environment_variables() -> tuple[str, ...]:
    """Every environment variable the code reads or writes: the string literals of the
    package that name one (REPLICATOR_*, DYNAMODB_REPLICATOR_*, DYNAMODB_LOCAL_DIR, AWS_REGION)."""
    names: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and _VARIABLE.match(value):
                names.add(value)
    return tuple(sorted(names))
