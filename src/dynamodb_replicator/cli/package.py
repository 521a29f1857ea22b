"""``dynamodb-replicator package``: the Lambda zip, named by its content."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dynamodb_replicator.cli.options import add_command, add_output, print_json
from dynamodb_replicator.deploy.package import build_keyed_zip, build_zip, code_key, file_digest

__all__ = ["register"]

HANDLER = "dynamodb_replicator.lambda_handler.handler"
RUNTIME = "python3.12"


def register(commands: Any) -> None:
    """Add the ``package`` command."""
    parser = add_command(
        commands,
        "package",
        help="build the reproducible Lambda zip",
        examples=["", "--output-dir build --output json", "--zip replicator.zip --with-boto3"],
        run=run,
    )
    parser.add_argument(
        "--output-dir",
        default="dist",
        metavar="DIR",
        help="write DIR/replicator-lambda-<sha256 prefix>.zip (default: dist)",
    )
    parser.add_argument(
        "--zip", metavar="FILE", help="write exactly this file instead (no hashed name)"
    )
    add_output(parser, file_option="--zip FILE")
    parser.add_argument(
        "--with-boto3",
        action="store_true",
        help="bundle boto3 too (the Lambda runtime already has it)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the zip and print its digest and the S3 key to upload it under."""
    if args.zip:
        output = Path(args.zip)
        build_zip(output, with_boto3=args.with_boto3)
    else:
        output = build_keyed_zip(Path(args.output_dir), with_boto3=args.with_boto3)
    digest = file_digest(output)
    key = code_key(digest)
    if args.output == "json":
        print_json(
            {
                "path": str(output),
                "sha256": digest,
                "bytes": output.stat().st_size,
                "code_key": key,
                "handler": HANDLER,
                "runtime": RUNTIME,
            }
        )
        return 0
    print(f"{output} sha256 {digest} ({output.stat().st_size:,} bytes)")
    print(f"code key: {key}")
    print(
        f"upload: aws s3 cp {output} s3://BUCKET/{key}; then "
        f"template --code-key {key} (or --package {output})"
    )
    print(f"handler: {HANDLER}  runtime: {RUNTIME}")
    return 0
