"""Adversarial review 3 of the control path, on DynamoDB Local: the claim conditions of
aws/state_workers.py let a heartbeat that lands late (its connection dropped, its retry
answered) write over a claim of ours that reads expired or was removed, whatever its
place in the process's count. The keeper-level interleavings:
tests/unit/test_control_path_review_3.py."""

from __future__ import annotations

from typing import Any

import pytest

from dynamodb_replicator.aws.state import WorkerIdInUseError
from dynamodb_replicator.core.streams import ShardRef

from .test_lease_expiry_order import client, shard, store  # noqa: F401 (fixtures)

STEP_MS = 3_600_000


def test_a_heartbeat_sent_under_a_clock_ahead_landing_after_a_lowering_one_is_refused(
    client: Any,  # noqa: F811
    shard: ShardRef,  # noqa: F811
) -> None:
    worker = f"w-{shard.shard_id}"
    holder = store(client)
    # Sent second (order 2), landed first: the clock back, the claim a lease from now.
    holder.heartbeat(worker, 40_000, instance="i1", now_ms=10_000, margin_ms=7_500, order=2)
    # Sent first (order 1) under the clock an hour ahead, landing now.
    ahead = 5_000 + STEP_MS
    holder.heartbeat(worker, ahead + 30_000, instance="i1", now_ms=ahead, order=1)
    # i1 dies; a lease after its last heartbeat, w on another machine starts.
    try:
        store(client).heartbeat(worker, 70_001, instance="i2", now_ms=40_001, order=1)
    except WorkerIdInUseError as held:
        pytest.fail(f"the worker id is pinned until {held.expires_ms} ms (now 40001)")


def test_a_heartbeat_landing_after_the_claim_was_removed_is_refused(
    client: Any,  # noqa: F811
    shard: ShardRef,  # noqa: F811
) -> None:
    worker = f"w-{shard.shard_id}"
    holder = store(client)
    holder.heartbeat(worker, 35_000, instance="i1", now_ms=5_000, order=2)  # the retry
    holder.forget_worker(worker, instance="i1", order=3)  # a clean stop
    assert worker not in holder.live_workers(5_000), "given back"
    holder.heartbeat(worker, 35_000, instance="i1", now_ms=5_000, order=1)  # lands late
    try:
        store(client).heartbeat(worker, 36_000, instance="i2", now_ms=6_000, order=1)
    except WorkerIdInUseError as held:
        pytest.fail(f"a cleanly stopped worker id is held until {held.expires_ms} ms")
