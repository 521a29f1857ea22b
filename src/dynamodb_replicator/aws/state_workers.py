"""The workers' claims in the state table (aws/state.py): the item ``worker|ID``, its
``expires``, ``instance``, ``margin``, ``order`` and ``unreachable``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from dynamodb_replicator.aws.state_table import StateTable, attr
from dynamodb_replicator.core.errors import ConditionFailedError, ConfigError

__all__ = ["WorkerIdInUseError", "WorkerItems"]

# Our own claim takes our heartbeats in the order we sent them, expired or released or
# not: one landing after a later one (or after ``forget_worker``'s marker) is refused, and
# the later one's expiry, margin and unreachable regions stand. Only another process's
# claim is free once expired: a late heartbeat of ours must not raise what a later one
# lowered, nor bring back a claim given back.
_MINE_IN_ORDER = "(#instance = :me AND (attribute_not_exists(#order) OR #order < :order))"
_FREE_OR_MINE = (
    "attribute_not_exists(pk)"
    " OR ((attribute_not_exists(#instance) OR #instance <> :me) AND #expires < :now)"
    f" OR {_MINE_IN_ORDER}"
)


class WorkerIdInUseError(ConfigError):
    """Another process holds this worker id (its claim is live): ``holder`` is that
    process's instance, ``expires_ms`` when its claim ends unless renewed."""

    def __init__(
        self,
        worker: str,
        region: str,
        *,
        holder: str,
        expires_ms: int,
        now_ms: int,
        margin_ms: int = 0,
    ) -> None:
        super().__init__(
            f"worker id {worker!r} is in use by another running process ({holder}, claim in "
            f"{region} renewed until {max(0, expires_ms - now_ms) / 1000:.0f} s from now): "
            "give each runner its own --worker-id"
        )
        self.holder, self.expires_ms = holder, expires_ms
        self.margin_ms = margin_ms  # the widest lease margin the holder ever had


class WorkerItems(StateTable):
    """The workers' claims part of the state store."""

    def heartbeat(
        self,
        worker: str,
        expires_ms: int,
        unreachable: Mapping[str, tuple[float, str]] | None = None,
        *,
        instance: str = "",
        now_ms: int = 0,
        replacing: str = "",
        margin_ms: int = 0,
        order: int,
    ) -> None:
        """Say the worker lives until ``expires_ms``, and which regions it cannot reach
        (region -> since when, epoch seconds, and why), for ``status``.

        With an ``instance``, the write is conditional: a live claim by another process
        (the same worker id started twice) raises WorkerIdInUseError, nothing written;
        a claim still held by ``replacing`` (a process proven dead) is taken over. Our own
        claim takes the heartbeats in the order the process sent them (``order``, its
        count): one landing after a later one is refused, nothing written, and a later one
        may lower the expiry (runner/claims.py). ``margin_ms``: the widest lease margin
        this process ever had (bounds how long its requests live), kept for a successor
        that proves it dead (runner/claims.py)."""
        item: dict[str, Any] = {"pk": {"S": f"worker|{worker}"}, "expires": {"N": str(expires_ms)}}
        if unreachable:
            item["unreachable"] = {
                "M": {
                    region: {"M": {"since": {"N": f"{since:.3f}"}, "reason": {"S": reason}}}
                    for region, (since, reason) in unreachable.items()
                }
            }
        if margin_ms:
            item["margin"] = {"N": str(margin_ms)}
        if not instance:
            self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=item))
            return
        item["instance"] = {"S": instance}
        item["order"] = {"N": str(order)}
        try:
            self._call(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression=_FREE_OR_MINE
                    + (" OR #instance = :dead" if replacing else ""),
                    ExpressionAttributeNames={
                        "#expires": "expires",
                        "#instance": "instance",
                        "#order": "order",
                    },
                    ExpressionAttributeValues={
                        ":now": {"N": str(now_ms)},
                        ":me": {"S": instance},
                        ":order": {"N": str(order)},
                        **({":dead": {"S": replacing}} if replacing else {}),
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
        except ConditionFailedError as exc:
            held = exc.item or {}
            if attr(held, "instance", "S") == instance:
                return  # ours, written by a heartbeat we sent later (or this one, landed)
            raise WorkerIdInUseError(
                worker,
                self.region,
                holder=held.get("instance", {}).get("S", "?"),
                expires_ms=int(held.get("expires", {}).get("N", now_ms)),
                now_ms=now_ms,
                margin_ms=int(held.get("margin", {}).get("N", 0)),
            ) from None

    def live_workers(self, now_ms: int) -> list[str]:
        return sorted(self.unreachable_from(now_ms))

    def unreachable_from(self, now_ms: int) -> dict[str, dict[str, tuple[float, str]]]:
        """Every live worker -> the regions it cannot reach (since, reason)."""
        found: dict[str, dict[str, tuple[float, str]]] = {}
        for item in self.scan("worker|"):
            if int(item["expires"]["N"]) < now_ms:
                continue
            regions = item.get("unreachable", {}).get("M", {})
            found[item["pk"]["S"].split("|", 1)[1]] = {
                region: (float(value["M"]["since"]["N"]), value["M"]["reason"]["S"])
                for region, value in regions.items()
            }
        return found

    def forget_worker(self, worker: str, *, instance: str, order: int) -> None:
        """Give this process's claim on ``worker`` back (a clean stop): it becomes a
        *released* marker (``expires`` 0, our ``instance``, ``order`` after every heartbeat
        we sent), read as no live worker and free to any other process at once. Not
        removed: a heartbeat of ours still on its way would find no item and bring the
        claim back; over the marker it is refused by its order. Another process's claim,
        or a later heartbeat of ours, stays."""
        item = {
            "pk": {"S": f"worker|{worker}"},
            "expires": {"N": "0"},
            "instance": {"S": instance},
            "order": {"N": str(order)},
        }
        with contextlib.suppress(ConditionFailedError):
            self._call(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression=f"attribute_not_exists(pk) OR {_MINE_IN_ORDER}",
                    ExpressionAttributeNames={"#instance": "instance", "#order": "order"},
                    ExpressionAttributeValues={
                        ":me": {"S": instance},
                        ":order": {"N": str(order)},
                    },
                ),
            )
