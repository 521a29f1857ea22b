"""The runner's state table, one per source region: checkpoints, leases, live workers.

Items (hash key ``pk``, a string):
  ``lease|TABLE|STREAM|SHARD``  ``owner``, ``expires`` (epoch ms), ``token`` (a counter
                                that every acquire increments) and ``order`` (the holder's
                                count of the renewal applied last, removed by an acquire):
                                who reads the shard; and
                                the shard's checkpoints, one attribute ``pos#TARGET`` per
                                target region (the last SequenceNumber that target accepted,
                                or ``END``) with ``ord#TARGET``, the same position in a form
                                that sorts as text (``END`` after every number)
  ``cp|TABLE|STREAM|SHARD``     checkpoints (``pos#TARGET``) written by earlier versions;
                                read under the lease item's own, never written any more
  ``worker|ID``                 ``expires``, ``instance``, ``unreachable``, ``margin``,
                                ``order``: a live worker, for sharing shards fairly; claimed
                                conditionally by one process (``instance``), its heartbeats
                                in the order it sent them (``order``); the regions it
                                cannot reach, for ``status``; given back at a clean stop
                                as a released item (``expires`` 0), never deleted
  ``stats|TABLE|STREAM|SHARD``  the holder's latest shard report (see aws/report_items.py)
  ``cp|backfill:TABLE|SOURCE|SEGMENT-of-SEGMENTS``
                                a copy's progress (core/progress.py), attribute
                                ``pos#TARGET``: the last key copied (``codec.key_to_json``)
                                or ``DONE`` (``NONE``: start from the beginning). It
                                shares the checkpoint layout, under a table name no
                                stream can have, so copies left half-way by earlier
                                versions resume.
  ``cp|note:NAME``              ``pos#note``: a short text a command keeps between runs
                                (add-region's copy mode, version-items' timestamp)
"""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.state_checkpoints import CheckpointItems
from dynamodb_replicator.aws.state_leases import LeaseItems
from dynamodb_replicator.aws.state_progress import ProgressItems
from dynamodb_replicator.aws.state_workers import WorkerIdInUseError, WorkerItems
from dynamodb_replicator.aws.tables import describe_table, wait_until_exists
from dynamodb_replicator.core.errors import ResourceInUseError
from dynamodb_replicator.core.retry import Backoff

__all__ = ["DynamoStateStore", "WorkerIdInUseError", "ensure_state_table"]


def ensure_state_table(client: Any, name: str, region: str) -> None:
    """Create the state table (on-demand, hash key ``pk``) if it does not exist."""
    if describe_table(client, name, region) is not None:
        return
    try:
        with translated(region, f"CreateTable {name}"):
            client.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
    except ResourceInUseError:
        pass  # created concurrently: fine
    wait_until_exists(client, name, region)


class DynamoStateStore(CheckpointItems, ProgressItems, LeaseItems, WorkerItems):
    """Checkpoints, scan progress and notes, leases and worker claims in one region's state
    table (each part in a module of its own: aws/state_*.py)."""

    def sibling(self, client: Any, backoff: Backoff) -> DynamoStateStore:
        """A store on ``client`` that holds the same leases (the same tokens)."""
        return DynamoStateStore(
            client, self.table, self.region, backoff, self.stop, held=self._held
        )
