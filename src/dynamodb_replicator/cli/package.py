"""``dynamodb-replicator package``: the Lambda zip, named by its content."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dynamodb_replicator.deploy.package import build_keyed_zip, build_zip, code_key, file_digest

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``package`` command."""
    parser = commands.add_parser("package", help="build the reproducible Lambda zip")
    parser.add_argument(
        "--output-dir",
        default="dist",
        help="write DIR/replicator-lambda-<sha256 prefix>.zip (default: dist)",
    )
    parser.add_argument("--output", help="write exactly this file instead (no hashed name)")
    parser.add_argument(
        "--with-boto3",
        action="store_true",
        help="bundle boto3 too (the Lambda runtime already has it)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the zip and print its digest and the S3 key to upload it under."""
    if args.output:
        output = Path(args.output)
        build_zip(output, with_boto3=args.with_boto3)
    else:
        output = build_keyed_zip(Path(args.output_dir), with_boto3=args.with_boto3)
    digest = file_digest(output)
    print(f"{output} sha256 {digest} ({output.stat().st_size:,} bytes)")
    print(f"code key: {code_key(digest)}")
    print(
        f"upload: aws s3 cp {output} s3://BUCKET/{code_key(digest)}; then "
        f"template --code-key {code_key(digest)} (or --package {output})"
    )
    print("handler: dynamodb_replicator.lambda_handler.handler  runtime: python3.12")
    return 0
