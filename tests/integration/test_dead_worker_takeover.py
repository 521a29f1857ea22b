"""A runner killed with SIGKILL and restarted under the same worker id on the same machine
(as a supervisor does): the successor proves its predecessor dead and takes its claim and
its shards over a margin later, long before the dead one's claim would have expired."""

from __future__ import annotations

import time
from pathlib import Path

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_runner import make_tables, start
from tests.runner_process import RunnerProcess, write_config
from tests.support import REGIONS

STATE = "takeover-state"


def test_a_killed_runners_shards_are_taken_over_before_its_claim_expires(
    ddb_local: DynamoDBLocal, runners: list[RunnerProcess], tmp_path: Path
) -> None:
    make_tables(ddb_local.endpoint_url, "Takeover")
    config = write_config(
        tmp_path / "t.toml",
        ["Takeover"],
        dict.fromkeys(REGIONS, ddb_local.endpoint_url),
        lease_timeout_seconds=60,  # a margin of 15 s; the claim outlives a restart under load
        state_table=STATE,
    )
    first = start(runners, tmp_path, config, "first")
    first.wait_for_leases(3)  # one shard per region's stream
    first.kill()
    state = make_client("dynamodb", RegionSpec(REGIONS[0], ddb_local.endpoint_url))
    claim = state.get_item(
        TableName=STATE, Key={"pk": {"S": f"worker|{first.worker_id}"}}, ConsistentRead=True
    )["Item"]
    expires = int(claim["expires"]["N"]) / 1000
    # The state this test is about: the worker is dead, its claim still held for long.
    assert not first.alive() and expires > time.time() + 20, claim
    second = start(runners, tmp_path, config, "second", worker=first.worker_id)
    second.wait_for_leases(3, timeout=max(1.0, expires - time.time()))
    assert time.time() < expires, second.tail()  # taken over while the old claim lived
    assert second.events("worker id held by a process that is dead"), second.tail()  # proven once
