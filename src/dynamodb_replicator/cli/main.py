"""``dynamodb-replicator``: the console script. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dynamodb_replicator import __version__
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
    version_items,
)
from dynamodb_replicator.core.errors import ReplicatorError

__all__ = ["main"]

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamodb-replicator",
        description="Multi-master DynamoDB replication across regions.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (
        demo,
        run,
        status,
        diff,
        repair,
        redrive,
        add_region,
        package,
        template,
        subscribe,
        version_items,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ReplicatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
