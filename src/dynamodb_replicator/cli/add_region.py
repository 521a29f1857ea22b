"""``dynamodb-replicator add-region``: add a region to live tables, then prove it matches."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.schema import create_like, describe_shape
from dynamodb_replicator.cli.compare import Selection
from dynamodb_replicator.cli.diff import (
    add_settle_options,
    print_report,
    settle_timeout,
    settled_diff,
)
from dynamodb_replicator.cli.interrupt import EXIT_INTERRUPTED
from dynamodb_replicator.cli.join_copy import copy, resume_command
from dynamodb_replicator.cli.options import add_command, add_output, print_json, text_console
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.roles import RoleSpec, parse_role
from dynamodb_replicator.ops.new_region import (
    append_region,
    check_new_region,
    seed_positions,
)
from dynamodb_replicator.runner.config import RunnerConfig, load_config

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``add-region`` command."""
    parser = add_command(
        commands,
        "add-region",
        help="add a region to the live tables: create, copy, seed positions, verify",
        examples=[
            "--config replicator.toml --region sa-east-1",
            "--config replicator.toml --region sa-east-1 --from eu-west-1 --max-wcu 2000",
            "--config local.toml --region ca-central-1 --endpoint-url http://127.0.0.1:8000",
            "--config replicator.toml --region sa-east-1 --resume",
        ],
        run=run,
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="TOML configuration file (updated)"
    )
    parser.add_argument("--region", required=True, metavar="REGION", help="the region to add")
    parser.add_argument(
        "--endpoint-url", metavar="URL", help="endpoint of the new region (DynamoDB Local, ...)"
    )
    parser.add_argument(
        "--role-arn",
        metavar="ARN",
        help="the new region is in another account: the role to assume there (written to "
        "the config with the region)",
    )
    parser.add_argument(
        "--external-id", metavar="ID", help="with --role-arn: the external ID its trust needs"
    )
    parser.add_argument(
        "--session-name", metavar="NAME", help="with --role-arn: the role session's name"
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="REGION",
        help="region to copy from (default: the first configured)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="the region is configured already (an earlier add-region ended before its "
        "verification passed): copy again with conditional writes and verify",
    )
    parser.add_argument(
        "--segments",
        type=int,
        default=4,
        metavar="N",
        help="parallel scan segments (default: 4)",
    )
    parser.add_argument(
        "--max-wcu",
        type=float,
        metavar="WCU",
        help="limit the copy and merge to this many write units per second, summed over "
        "the regions written (default: no limit)",
    )
    add_settle_options(parser)
    add_output(parser)


def _check_request(config: RunnerConfig, args: argparse.Namespace, resumed: bool) -> None:
    """Refuse what would surprise: copying into a configured region again without
    ``--resume``, or reaching AWS for a region of an all-local setup."""
    if resumed and not args.resume:
        raise ConfigError(
            f"{args.region} is configured already (replication into it runs): add-region "
            "would copy every item again. Pass --resume to finish an earlier add-region of "
            "it, or use `diff` and `repair` to compare and fix it"
        )
    if args.resume and not resumed:
        raise ConfigError(f"--resume: {args.region} is not in {args.config} yet")
    local = all(spec.endpoint_url for spec in config.regions)
    if not resumed and not args.endpoint_url and local:
        raise ConfigError(
            f"no --endpoint-url for {args.region}, but every configured region has an "
            "endpoint_url (a local setup): it would be reached on AWS. Pass --endpoint-url, "
            f"e.g. --endpoint-url {config.regions[0].endpoint_url}"
        )


def _role(config: RunnerConfig, args: argparse.Namespace, resumed: bool) -> RoleSpec | None:
    """The new region's role: from the options, else (``--resume``) from the config."""
    given = {
        "role_arn": args.role_arn,
        "external_id": args.external_id,
        "session_name": args.session_name,
    }
    role = parse_role({k: v for k, v in given.items() if v is not None}, "add-region")
    return role if role is not None or not resumed else config.region(args.region).role


def _verify(
    console: Console,
    path: Path,
    new: str,
    segments: int,
    timeout: float | None,
) -> bool:
    """Diff every region (the new one included: a merge wrote into all of them); keys that
    differ are settled against the runner's checkpoints (``ops/settle.py``): True when none
    diverged."""
    config = load_config(path)  # with the new region: its stream is a source now too
    ok = True
    others = ", ".join(spec.name for spec in config.regions if spec.name != new)
    for table in config.tables:
        reference = config.regions[0]
        physical = config.replication.names.physical(table, reference.name)
        shape = describe_shape(make_client("dynamodb", reference), physical, reference.name)
        assert shape is not None
        keys = [name for name, _ in shape.key_schema]
        selection = Selection(config, config.regions, {table: keys})
        report = settled_diff(selection, table, keys, segments=segments, timeout=timeout)
        if not report.clean:
            ok = False
            print_report(console, report)
            console.print(
                f"[red]{new} and {others} do not match[/red]: is a runner running with the "
                "updated config? `repair` fixes diverged keys."
            )
            continue
        if report.settle is not None:
            settle = report.settle
            console.print(
                f"{table}: {settle.in_flight} keys differed while changes were in flight and "
                f"agreed once replication caught up ({settle.method}, {settle.seconds:.1f} s)"
            )
        console.print(f"{table}: {new} matches {others}")
    return ok


def _create(
    console: Console, config: RunnerConfig, source: RegionSpec, new: RegionSpec
) -> dict[str, bool]:
    """Create each table in the new region like the source's: table -> created by this run."""
    names = config.replication.names
    new_client = make_client("dynamodb", new)
    created = {}
    for table in config.tables:
        physical = names.physical(table, source.name)
        shape = describe_shape(make_client("dynamodb", source), physical, source.name)
        if shape is None:
            raise ConfigError(f"table {physical} does not exist in the source region {source.name}")
        here = shape.named(names.physical(table, new.name))
        created[table] = create_like(new_client, here, new.name)
        state = "created" if created[table] else "found (same schema)"
        named = "" if here.name == table else f" (as {here.name})"
        console.print(f"{table}{named}: {state} in {new.name}")
    return created


def run(args: argparse.Namespace) -> int:
    """Create the tables, seed positions, merge and copy, add the region to the config,
    verify."""
    # With --output json the story goes to stderr and stdout holds only the JSON result.
    console = text_console(stderr=args.output == "json")
    path = Path(args.config)
    config = load_config(path)
    if args.segments < 1:
        raise ConfigError("--segments must be at least 1")
    timeout = settle_timeout(args)
    source, resumed = check_new_region(config, args.region, args.source)
    _check_request(config, args, resumed)
    endpoint = args.endpoint_url or (config.region(args.region).endpoint_url if resumed else None)
    new = RegionSpec(args.region, endpoint, role=_role(config, args, resumed))
    created = _create(console, config, source, new)
    seeded = seed_positions(config, source.name, new.name, console.print)
    console.print(f"seeded {seeded} shard positions for {new.name}")
    code, counts = copy(console, config, (source, new), args, created)
    if code:
        return code
    added = append_region(path, new)
    if added:
        console.print(
            f"added {new.name} to {path}: running runners pick it up within seconds and "
            "replay every change since the seeded positions into it"
        )
    try:
        verified = _verify(console, path, new.name, args.segments, timeout)
    except KeyboardInterrupt:
        console.print(
            f"interrupted while verifying; {new.name} is added. Verify with: "
            f"{resume_command(args, True)}"
        )
        return EXIT_INTERRUPTED
    if args.output == "json":
        print_json(
            {
                "region": new.name,
                "source": source.name,
                "tables": list(config.tables),
                "counts": counts,
                "added_to_config": added,
                "verified": verified,
            }
        )
    unversioned = any(c["unversioned"] for c in counts.values())
    return 0 if verified and not unversioned else 1
