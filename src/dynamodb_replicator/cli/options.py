"""Conventions every command shares: how it is registered, ``--output``, printing JSON.

Every command is registered with ``add_command`` (help, description and examples), prints
results as text or as one JSON document (``--output text|json``; keys are DynamoDB JSON
objects, never JSON inside strings; in text, the same JSON text), and reports a bad
argument as one ``error:`` line with exit 2 (``main``). Text goes through ``text_console``:
lines are never wrapped (a script reading a pipe gets one line per line, whatever the
terminal's width), and a closed pipe is left to ``main`` to end quietly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.console import Console

__all__ = [
    "EXIT_USAGE",
    "OUTPUTS",
    "ArgumentError",
    "Parser",
    "add_command",
    "add_output",
    "key_object",
    "print_json",
    "text_console",
]

EXIT_USAGE = 2
"""Exit status of a bad argument, a bad configuration or a refused request."""

OUTPUTS = ("text", "json")


class ArgumentError(Exception):
    """A bad command line: ``main`` prints it as one ``error:`` line and exits 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting, so a bad
    argument is one line on stderr (``main`` adds the hint to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{message} (see {self.prog} --help)")


def add_command(
    commands: Any,
    name: str,
    *,
    help: str,
    examples: Sequence[str],
    run: Callable[[argparse.Namespace], int],
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand with a description and an ``examples:`` epilog."""
    epilog = "examples:\n" + "\n".join(f"  dynamodb-replicator {name} {e}" for e in examples)
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def _output_choice(old_meaning: str | None) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value in OUTPUTS:
            return value
        hint = f"; to write a file use {old_meaning}" if old_meaning else ""
        raise argparse.ArgumentTypeError(
            f"invalid choice {value!r}: --output is the format, text or json{hint}"
        )

    return parse


def add_output(parser: argparse.ArgumentParser, *, file_option: str | None = None) -> None:
    """``--output text|json`` (and the deprecated ``--json``, hidden). ``file_option``: the
    option that writes a file now, named in the error when a path is given to --output."""
    parser.add_argument(
        "--output",
        type=_output_choice(file_option),
        default="text",
        metavar="{text,json}",
        help="text for people (default) or one JSON document for scripts",
    )
    parser.add_argument(
        "--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS
    )


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit 1 ("differences found" for diff): main ends it quietly instead.
        raise BrokenPipeError


def text_console(*, stderr: bool = False) -> Console:
    """A rich Console for a command's text output: no wrapping (soft wrap), on a terminal
    or not."""
    return _Console(stderr=stderr, soft_wrap=True)


def key_object(key: Any) -> Any:
    """A key as a JSON object: ``codec.key_to_json`` text is decoded, an object kept."""
    return json.loads(key) if isinstance(key, str) else key


def print_json(document: Any) -> None:
    """One JSON document on stdout (indented, keys sorted as given)."""
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
