"""The shards' leases in the state table (aws/state.py): the item
``lease|TABLE|STREAM|SHARD``, its ``owner``, ``expires``, ``token`` and ``order``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynamodb_replicator.aws.state_table import StateTable, attr, lease_id
from dynamodb_replicator.core.errors import ConditionFailedError
from dynamodb_replicator.core.streams import ShardRef

__all__ = ["LeaseItems"]


class LeaseItems(StateTable):
    """The leases part of the state store."""

    def acquire(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, inherit: bool = False
    ) -> bool:
        """Take the lease if it is free, expired, or held by this store (its token), with a
        new token. True when we hold it; from then on only this store may save the shard's
        checkpoints. The owner's name alone is not enough: a process restarted with the
        same worker id waits for the expiry, as its predecessor may write until then;
        unless ``inherit``: the caller took the claim over from a process proven dead and
        waited out its requests (runner/claims.py), so any lease of ``owner`` is its own."""
        condition = "attribute_not_exists(#owner) OR #expires < :now"
        if inherit:
            condition += " OR #owner = :me"
        values = {":now": {"N": str(now_ms)}, ":one": {"N": "1"}}
        held = self._held.get(lease_id(shard))
        if held is not None and held[0] == owner:
            condition += " OR (#owner = :me AND #token = :token)"
            values[":token"] = {"N": held[1]}
        # A new token starts a new count of renewals (``renew``): the last one's is removed.
        update = " ADD #token :one REMOVE #order"
        applied, item = self._lease_update(
            shard, owner, now_ms + duration_ms, condition, values=values, update=update
        )
        if not applied:
            return False
        self._held[lease_id(shard)] = (owner, item["token"]["N"])
        return True

    def renew(
        self, shard: ShardRef, owner: str, now_ms: int, duration_ms: int, *, order: int
    ) -> bool:
        """Move the expiry of the lease this store acquired; False when it passed to
        someone else.

        Renewals are ordered by ``order`` (the holder counts the requests it sends), not by
        their expiries: a renewal whose connection dropped may still land after a later one
        (its same-tick retry), and is refused then, so the later one's expiry stands. A
        later one may lower the expiry: one sent while the wall clock ran ahead does not
        pin the lease (runner/leases.py lowers its deadline before it sends such a one).
        A refusal while the lease is still ours is this very request landed already (a
        transport's own retry): a renewal, as long as what is stored reaches ours."""
        held = self._held.get(lease_id(shard))
        if held is None or held[0] != owner:
            return False
        values = {":token": {"N": held[1]}, ":order": {"N": str(order)}}
        condition = (
            "#owner = :me AND #token = :token AND (attribute_not_exists(#order) OR #order < :order)"
        )
        expires_ms = now_ms + duration_ms
        applied, item = self._lease_update(
            shard, owner, expires_ms, condition, values=values, update=", #order = :order"
        )
        if applied:
            return True
        if (attr(item, "owner", "S"), attr(item, "token", "N")) != held:
            self._held.pop(lease_id(shard), None)
            return False
        return int(attr(item, "expires", "N") or 0) >= expires_ms

    def release(self, shard: ShardRef, owner: str) -> None:
        """Hand the lease back: it expires now, and its token moves on, so that a renewal
        sent before and landing after the release is refused (not given its expiry back).
        The token is forgotten once the table answered (applied or refused), not when the
        request failed: a retry then sends the same condition, and of two attempts that
        both land, the second finds the token moved and is refused."""
        held = self._held.get(lease_id(shard))
        if held is None or held[0] != owner:
            return
        values = {":token": {"N": held[1]}, ":one": {"N": "1"}}
        condition = "#owner = :me AND #token = :token"
        self._lease_update(shard, owner, 0, condition, values=values, update=" ADD #token :one")
        if self._held.get(lease_id(shard)) == held:
            self._held.pop(lease_id(shard), None)

    def _lease_update(
        self,
        shard: ShardRef,
        owner: str,
        expires_ms: int,
        condition: str,
        *,
        values: Mapping[str, Any],
        update: str = "",
    ) -> tuple[bool, Mapping[str, Any]]:
        """The conditional update of a lease (owner and expiry set, then ``update``):
        (applied, the item) - the attributes written when it was, else the item as stored
        (empty when there is none)."""
        names = {"#owner": "owner", "#expires": "expires"}
        if "#token" in condition or "#token" in update:
            names["#token"] = "token"
        if "#order" in condition or "#order" in update:
            names["#order"] = "order"
        try:
            answer: dict[str, Any] = self._call(
                "lease",
                lambda: self.client.update_item(
                    TableName=self.table,
                    Key=self._lease_key(shard),
                    UpdateExpression="SET #owner = :me, #expires = :exp" + update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={
                        ":me": {"S": owner},
                        ":exp": {"N": str(expires_ms)},
                        **values,
                    },
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        except ConditionFailedError as exc:
            return False, exc.item or {}
        return True, answer.get("Attributes", {})

    def leases(self) -> dict[str, tuple[str, int]]:
        """Every lease: shard key -> (owner, expires ms)."""
        return {
            item["pk"]["S"].split("|", 1)[1]: (item["owner"]["S"], int(item["expires"]["N"]))
            for item in self.scan("lease|")
            if "owner" in item  # add-region may seed positions of a shard nobody leased yet
        }
