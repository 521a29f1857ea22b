"""MkDocs hooks: the reference tables, rendered from the code at build time.

A page asks for a table with a marker line, ``<!-- reference:NAME -->``. Names, types,
defaults, options and exit codes come from ``dynamodb_replicator.reference``; what a config
key, variable or Lambda metric means comes from ``descriptions.yml`` beside this file. A name
without a description (or a description of a name the code no longer has) is a warning,
which ``mkdocs build --strict`` turns into a failed build; ``problems()`` is the same check
for the unit tests. The benchmark plots are served from ``benchmarks/results/``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File

from dynamodb_replicator import reference
from dynamodb_replicator.awslambda.settings import replication_environment
from dynamodb_replicator.core.settings import ReplicationSettings

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PLOTS = ROOT / "benchmarks" / "results"
log = logging.getLogger("mkdocs.hooks.reference")
_MARKER = re.compile(r"^<!-- reference:([a-z-]+) -->$", re.MULTILINE)


def descriptions() -> dict[str, dict[str, Any]]:
    """``descriptions.yml``: section -> name -> meaning."""
    data: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "descriptions.yml").read_text())
    return data


def _names() -> dict[str, list[str]]:
    return {
        "config": [k.name for k in reference.config_keys()],
        "region": [k.name for k in reference.region_keys()],
        "environment": list(reference.environment_variables()),
        "lambda_metrics": [m.name for m in reference.lambda_metrics()],
    }


def problems() -> list[str]:
    """What the docs lack: names the code has without a description, and the reverse."""
    found = []
    described = descriptions()
    for section, names in _names().items():
        have = described.get(section, {})
        for name in names:
            if name not in have:
                found.append(
                    f"{section}: {name} has no description in docs/_reference/descriptions.yml"
                )
        for name in set(have) - set(names):
            found.append(f"{section}: {name} is described but the code has no such name")
    found += [
        f"command {c.name} declares no exit codes in cli/exits.py"
        for c in reference.commands()
        if not set(c.exit_codes) - {2, 130}
    ]
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _keys(keys: Iterable[reference.ConfigKey], meaning: Mapping[str, str]) -> str:
    rows = (
        (f"`{k.name}`", k.kind, f"`{k.default}`" if k.default else "", meaning.get(k.name, ""))
        for k in keys
    )
    return _table(("key", "type", "default", "meaning"), rows)


def config_keys() -> str:
    """The top-level keys of the runner's config."""
    return _keys(reference.config_keys(), descriptions()["config"])


def region_keys() -> str:
    """The keys of a ``[[regions]]`` entry."""
    return _keys(reference.region_keys(), descriptions()["region"])


def commands() -> str:
    """One section per command: what it does, its exit codes, its options."""
    parts = []
    for command in reference.commands():
        codes = _table(("exit", "meaning"), ((str(c), m) for c, m in command.exit_codes.items()))
        options = _table(
            ("option", "meaning"),
            (
                (f"`{o.flags}`" + (" (required)" if o.required else ""), o.help)
                for o in command.options
            ),
        )
        parts.append(f"## {command.name}\n\n{command.help}.\n\n{codes}\n")
        if command.options:
            parts.append(f"{options}\n")
    return "\n".join(parts)


def command_index() -> str:
    """Every command, one line each, linking to its section."""
    rows = (
        (f"[`{c.name}`](#{c.name})", c.help, ", ".join(map(str, c.exit_codes)))
        for c in reference.commands()
    )
    return _table(("command", "what it does", "exit codes"), rows)


def runner_metrics() -> str:
    """The runner's Prometheus metrics."""
    rows = (
        (f"`{m.name}`", m.kind, ", ".join(f"`{label}`" for label in m.labels), m.help)
        for m in reference.runner_metrics()
    )
    return _table(("metric", "type", "labels", "meaning"), rows)


def lambda_metrics() -> str:
    """The Lambda function's EMF metrics."""
    meaning = descriptions()["lambda_metrics"]
    rows = (
        (f"`{m.name}`", m.kind, ", ".join(f"`{d}`" for d in m.labels), meaning.get(m.name, ""))
        for m in reference.lambda_metrics()
    )
    return _table(("metric", "unit", "dimensions", "meaning"), rows)


def environment() -> str:
    """The environment variables, with the defaults the template writes."""
    written = replication_environment(ReplicationSettings())
    described = descriptions()["environment"]
    rows = []
    for name in reference.environment_variables():
        default, meaning = described.get(name, ("", ""))
        if name in written:
            default = f"`{written[name]}`"
        rows.append((f"`{name}`", default, meaning))
    return _table(("variable", "default", "meaning"), rows)


TABLES: dict[str, Callable[[], str]] = {
    "config-keys": config_keys,
    "region-keys": region_keys,
    "commands": commands,
    "command-index": command_index,
    "runner-metrics": runner_metrics,
    "lambda-metrics": lambda_metrics,
    "environment": environment,
}


def on_pre_build(config: Any) -> None:
    """Fail a strict build while the reference lacks a description."""
    for problem in problems():
        log.warning(problem)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each ``<!-- reference:NAME -->`` marker by its table."""

    def render(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            log.warning("%s: unknown reference table %r", page.file.src_uri, name)
            return match.group(0)
        return TABLES[name]()

    return _MARKER.sub(render, markdown)


def on_files(files: Any, config: Any) -> Any:
    """Serve the plots ``make bench`` draws as ``benchmarks/images/NAME.png``."""
    for plot in sorted(PLOTS.glob("*.png")):
        files.append(File.generated(config, f"images/{plot.name}", abs_src_path=str(plot)))
    return files
