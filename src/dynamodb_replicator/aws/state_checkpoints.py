"""The shards' checkpoints in the state table (aws/state.py): a ``pos#TARGET`` attribute
per target in the shard's lease item, with ``ord#TARGET`` (the same position as text that
sorts); the ``cp|`` items of earlier versions are read under them.

Why in the lease item: one conditional write then checks who holds the lease and moves the
checkpoint, atomically and without a transaction. A worker that lost the lease (or a
thread still finishing a dropped shard's page) is refused, and so is a process restarted
under the same worker id by its predecessor: each acquire takes a new token. Positions only
move forward, and END is final."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from dynamodb_replicator.aws.state_table import StateTable, lease_id, stored_positions
from dynamodb_replicator.core.errors import ConditionFailedError
from dynamodb_replicator.core.streams import END, LeaseLostError, ShardRef

__all__ = ["CheckpointItems"]

log = logging.getLogger("dynamodb_replicator.aws.state")  # the store's one logger


def _order(position: str) -> str:
    """A checkpoint as text that sorts like the positions: SequenceNumbers are decimal
    strings of 21 to 40 digits, and END comes after all of them."""
    return "~" if position == END else position.zfill(48)


class CheckpointItems(StateTable):
    """The checkpoints part of the state store."""

    def load(self, shard: ShardRef) -> dict[str, str]:
        """target region -> last accepted SequenceNumber (or END); absent: no checkpoint."""
        legacy = self._load_positions(f"{shard.table}|{shard.stream_label}|{shard.shard_id}")
        return legacy | stored_positions(self._lease_item(shard))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        """Move some targets' positions forward (others keep theirs), as the lease holder.

        Raises LeaseLostError when this store no longer holds the shard's lease. A position
        behind the saved one (or after END) is not written: checkpoints never go back.
        """
        held = self._held.get(lease_id(shard))
        if held is None:
            raise LeaseLostError(f"{shard}: this worker does not hold the lease")
        owner, token = held
        forward = dict(positions)
        while forward:
            condition = "#owner = :me AND #token = :token"
            try:
                self._set_positions(shard, forward, condition, {":me": owner, ":token": token})
                return
            except ConditionFailedError:
                item = self._lease_item(shard)
            if item.get("owner", {}).get("S") != owner or item.get("token", {}).get("N") != token:
                self._held.pop(lease_id(shard), None)
                raise LeaseLostError(f"{shard}: the lease passed to another worker")
            saved = stored_positions(item)
            behind = {t: p for t, p in forward.items() if t in saved and not _ahead(p, saved[t])}
            forward = {t: p for t, p in forward.items() if t not in behind}
            for target, position in behind.items():
                if position != saved[target]:
                    log.warning(
                        "checkpoint not moved backwards",
                        extra={"shard": str(shard), "target": target, "saved": saved[target]},
                    )

    def seed(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        """Set the positions of targets that have none yet (add-region), lease or not."""
        for target, position in positions.items():
            # A failed condition: a position is saved already, and it is kept.
            with contextlib.suppress(ConditionFailedError):
                self._set_positions(shard, {target: position}, "attribute_not_exists(#p0)", {})

    def _set_positions(
        self, shard: ShardRef, positions: Mapping[str, str], condition: str, extra: Any
    ) -> None:
        names = {"#owner": "owner", "#token": "token"} if "#owner" in condition else {}
        values: dict[str, Any] = {
            name: {"N" if name == ":token" else "S": value} for name, value in extra.items()
        }
        clauses = [condition]
        assignments = []
        for i, (target, position) in enumerate(positions.items()):
            names |= {f"#p{i}": f"pos#{target}", f"#o{i}": f"ord#{target}"}
            values |= {f":p{i}": {"S": position}, f":o{i}": {"S": _order(position)}}
            assignments.append(f"#p{i} = :p{i}, #o{i} = :o{i}")
            clauses.append(f"(attribute_not_exists(#o{i}) OR #o{i} < :o{i})")
        self._call(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.table,
                Key=self._lease_key(shard),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=" AND ".join(clauses),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )

    def _lease_item(self, shard: ShardRef) -> dict[str, Any]:
        key = self._lease_key(shard)
        item: dict[str, Any] = self._call(
            "GetItem",
            lambda: self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True),
        ).get("Item", {})
        return item

    def checkpoint_items(self, table: str) -> list[dict[str, Any]]:
        """The items holding ``table``'s checkpoints (``pos#TARGET`` attributes): the lease
        items, and the ``cp|`` items of earlier versions."""
        items = self.scan(f"lease|{table}|") + self.scan(f"cp|{table}|")
        return [item for item in items if any(name.startswith("pos#") for name in item)]


def _ahead(position: str, saved: str) -> bool:
    return _order(position) > _order(saved)
