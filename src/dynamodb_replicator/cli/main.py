"""``dynamodb-replicator``: the console script. Each subcommand lives in its own module.

Exit status: 0 all is well; 1 the command found what it looks for (regions differ, a pair
is stuck, keys left undecided); 2 it could not do its work: a bad argument or configuration,
a region that refused or could not be reached; 130 interrupted (Ctrl-C); 141 standard
output closed early (``... | head``: the command ends quietly, as a killed pipe writer
would). No traceback reaches the user: an error is ``error:`` lines on stderr (one per
problem; ``DYNAMODB_REPLICATOR_DEBUG=1`` shows the traceback of an unexpected one).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError

from dynamodb_replicator import __version__
from dynamodb_replicator.aws.clients import use_profile
from dynamodb_replicator.cli import (
    add_region,
    demo,
    diff,
    package,
    redrive,
    repair,
    run,
    status,
    subscribe,
    template,
    tombstones,
    version_items,
)
from dynamodb_replicator.cli.exits import EXIT_CLOSED_PIPE, EXIT_INTERRUPTED, epilog
from dynamodb_replicator.cli.options import EXIT_USAGE, ArgumentError, Parser
from dynamodb_replicator.core.errors import ReplicatorError
from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.testing.local import LocalServerError

__all__ = ["main"]

EXIT_ERROR = EXIT_USAGE
COMMANDS = (
    demo,
    run,
    status,
    diff,
    repair,
    add_region,
    package,
    template,
    subscribe,
    tombstones,
    redrive,
    version_items,
)
PROFILE_HELP = "AWS named profile for every AWS call (default: the usual credential chain)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dynamodb-replicator",
        description="Multi-master DynamoDB replication across regions.",
        epilog="examples:\n  dynamodb-replicator demo\n"
        "  dynamodb-replicator run --config replicator.toml\n"
        "  dynamodb-replicator status --config replicator.toml --output json\n"
        "Each command has its own --help with examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    for name, command in commands.choices.items():
        command.epilog = "\n\n".join(filter(None, (command.epilog, epilog(name))))
        if name != "demo":  # the demo runs on its own DynamoDB Local
            command.add_argument("--profile", metavar="NAME", help=PROFILE_HELP)
    return parser


def _fail(message: str, code: int) -> int:
    for line in message.splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> int:
    use_profile(getattr(args, "profile", None))
    # Warnings and errors with their context (key, region), JSON unless on a terminal;
    # ``run`` and ``demo`` configure their own logging, and so may a program calling main.
    if not logging.getLogger().handlers:
        configure("WARNING")
    code: int = args.run(args)
    return code


def _closed_pipe() -> int:
    """Standard output's reader is gone: say nothing more, and let nothing write to the
    pipe again (the interpreter's last flush would print a traceback-like complaint)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is no real file (tests): nothing flushes to a pipe at exit
    return EXIT_CLOSED_PIPE


def _interrupted(argv: Sequence[str] | None) -> int:
    """Ctrl-C reached the top: one line, exit 130, at once. Worker threads still blocked in
    a request (a scan waiting on a slow region) would hold the interpreter's exit for their
    read timeouts and retries: the process ends without waiting for them."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    what = words[0] if words else "command"
    # Nothing these commands do is left half-written (each write is whole and conditional, a
    # file is written again): the same command run again starts over and finishes.
    print(
        f"interrupted: {what} stopped before it finished; run it again to start over",
        file=sys.stderr,
    )
    if threading.active_count() > 1:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED


def _end_interrupted() -> None:
    """A long command stopped by Ctrl-C has saved its resume point and said how to resume,
    and its threads are done: end the process now. The interpreter's teardown (botocore's
    and rich's modules and objects) has nothing left to write, and it took 3.5 of the 3.6 s
    from Ctrl-C to exit on the loaded test machine: the copy itself stopped in 0.13 s."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        if code == EXIT_INTERRUPTED and argv is None:
            _end_interrupted()
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except (ArgumentError, ReplicatorError, LocalServerError, BotoCoreError, OSError) as exc:
        return _fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return _interrupted(argv)
    except Exception as exc:
        if os.environ.get("DYNAMODB_REPLICATOR_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())
