"""The new region's place around ``add-region``'s copy (ops/backfill.py): the source region
it copies from, the replication positions seeded for it in every region's state table
(step 2), and the config file it is added to (step 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore, ensure_state_table
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.streams import ShardRef
from dynamodb_replicator.files import replace_file
from dynamodb_replicator.runner.config import RunnerConfig

__all__ = ["append_region", "check_new_region", "seed_positions"]


def append_region(path: Path, spec: RegionSpec) -> bool:
    """Add ``spec`` to the config file (text appended, comments kept); False if present."""
    text = path.read_text()
    if f'name = "{spec.name}"' in text:
        return False
    block = f'\n[[regions]]\nname = "{spec.name}"\n'
    if spec.endpoint_url:
        block += f'endpoint_url = "{spec.endpoint_url}"\n'
    if spec.role is not None:
        # JSON strings are TOML basic strings for these characters (no control characters).
        block += f"role_arn = {json.dumps(spec.role.role_arn)}\n"
        block += f"session_name = {json.dumps(spec.role.session_name)}\n"
        if spec.role.external_id is not None:
            block += f"external_id = {json.dumps(spec.role.external_id)}\n"
    replace_file(path, text.rstrip("\n") + "\n" + block)
    return True


def seed_positions(config: RunnerConfig, source: str, new: str, log: Callable[[str], None]) -> int:
    """Start the new target, in every region's state table, at the source's position.

    Returns how many shard positions were seeded. Existing positions of the new target are
    kept (a resumed run). A shard the source has no position for starts at TRIM_HORIZON.
    """
    seeded = 0
    for spec in config.regions:
        client = make_client("dynamodb", spec)
        ensure_state_table(client, config.state_table, spec.name)
        state = DynamoStateStore(client, config.state_table, spec.name)
        streams = StreamClient(
            spec.name, client, make_client("dynamodbstreams", spec), config.replication.names
        )
        for table in config.tables:
            for arn in streams.stream_arns(table):
                for shard in streams.shards(arn):
                    ref = ShardRef(table, arn, shard.shard_id)
                    positions = state.load(ref)
                    if new in positions or source not in positions:
                        continue
                    state.seed(ref, {new: positions[source]})
                    seeded += 1
        log(f"{spec.name}: replication into {new} will start where {source} stands")
    return seeded


def check_new_region(
    config: RunnerConfig, name: str, source: str | None
) -> tuple[RegionSpec, bool]:
    """The source region spec, and whether ``name`` is already configured (a resumed run)."""
    known = {spec.name for spec in config.regions}
    chosen = source or config.regions[0].name
    if chosen not in known:
        raise ConfigError(f"--from {chosen}: not a configured region ({sorted(known)})")
    if chosen == name:
        raise ConfigError("--from must be another region than the one being added")
    return config.region(chosen), name in known
