"""``dynamodb-replicator package``: the Lambda zip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dynamodb_replicator.deploy.package import build_zip

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("package", help="build the reproducible Lambda zip")
    parser.add_argument("--output", default="dist/replicator-lambda.zip")
    parser.add_argument(
        "--with-boto3",
        action="store_true",
        help="bundle boto3 too (the Lambda runtime already has it)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    digest = build_zip(output, with_boto3=args.with_boto3)
    print(f"{output} sha256 {digest} ({output.stat().st_size:,} bytes)")
    print("handler: dynamodb_replicator.lambda_handler.handler  runtime: python3.12")
    return 0
