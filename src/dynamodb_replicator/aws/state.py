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
                                cannot reach, for ``status``
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

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.tables import describe_table, wait_until_exists
from dynamodb_replicator.core.codec import key_from_json, key_to_json
from dynamodb_replicator.core.errors import ConditionFailedError, ConfigError, ResourceInUseError
from dynamodb_replicator.core.progress import ScanSegment, SegmentProgress
from dynamodb_replicator.core.retry import Backoff, call_with_retries
from dynamodb_replicator.core.streams import END, LeaseLostError, ShardRef

__all__ = ["DynamoStateStore", "WorkerIdInUseError", "ensure_state_table"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_SCAN_DONE = "DONE"  # stored for a finished segment (never a key_to_json text)
_SCAN_NONE = "NONE"  # stored for a segment to start again from the beginning


def _order(position: str) -> str:
    """A checkpoint as text that sorts like the positions: SequenceNumbers are decimal
    strings of 21 to 40 digits, and END comes after all of them."""
    return "~" if position == END else position.zfill(48)


# A worker id is free when unclaimed, expired, or claimed by this process already: then in
# the order the process sent its heartbeats (one landing after a later one is refused, and
# the later one's expiry, margin and unreachable regions stand).
_FREE_OR_MINE = (
    "attribute_not_exists(pk) OR #expires < :now"
    " OR (#instance = :me AND (attribute_not_exists(#order) OR #order < :order))"
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


class DynamoStateStore:
    """Checkpoints and leases in one region's state table."""

    def __init__(
        self,
        client: Any,
        table: str,
        region: str,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        *,
        held: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self.region = region
        self.backoff = backoff or Backoff()
        self.stop = stop  # set on shutdown: retries give up at once
        # Leases this store acquired: shard -> (owner, token). Checkpoint saves name both.
        # ``held``: shared with another store of the same process (the runner renews
        # through a client of its own, and saves checkpoints through this one).
        self._held: dict[str, tuple[str, str]] = {} if held is None else held

    def sibling(self, client: Any, backoff: Backoff) -> DynamoStateStore:
        """A store on ``client`` that holds the same leases (the same tokens)."""
        return DynamoStateStore(
            client, self.table, self.region, backoff, self.stop, held=self._held
        )

    def _call(self, action: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            with translated(self.region, f"{action} on {self.table}"):
                return call()

        return call_with_retries(attempt, self.backoff, stop=self.stop)

    # -- checkpoints -------------------------------------------------------------------
    # Why in the lease item: one conditional write then checks who holds the lease and
    # moves the checkpoint, atomically and without a transaction. A worker that lost the
    # lease (or a thread still finishing a dropped shard's page) is refused, and so is a
    # process restarted under the same worker id by its predecessor: each acquire takes a
    # new token. Positions only move forward, and END is final.
    def load(self, shard: ShardRef) -> dict[str, str]:
        """target region -> last accepted SequenceNumber (or END); absent: no checkpoint."""
        legacy = self._load_positions(f"{shard.table}|{shard.stream_label}|{shard.shard_id}")
        return legacy | _positions(self._lease_item(shard))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        """Move some targets' positions forward (others keep theirs), as the lease holder.

        Raises LeaseLostError when this store no longer holds the shard's lease. A position
        behind the saved one (or after END) is not written: checkpoints never go back.
        """
        held = self._held.get(_lease_id(shard))
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
                self._held.pop(_lease_id(shard), None)
                raise LeaseLostError(f"{shard}: the lease passed to another worker")
            saved = _positions(item)
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

    # -- scan progress -----------------------------------------------------------------
    @staticmethod
    def _progress_id(scan: ScanSegment) -> str:
        return f"backfill:{scan.table}|{scan.source}|{scan.segment}-of-{scan.segments}"

    def load_progress(self, scan: ScanSegment) -> SegmentProgress:
        """How far the segment's copy into ``scan.target`` came (not started: none saved)."""
        saved = self._load_positions(self._progress_id(scan)).get(scan.target)
        if saved == _SCAN_NONE:
            return SegmentProgress()
        if saved == _SCAN_DONE:
            return SegmentProgress(done=True)
        return SegmentProgress(key_from_json(saved) if saved else None)

    def save_progress(self, scan: ScanSegment, progress: SegmentProgress) -> None:
        if progress.done:
            saved = _SCAN_DONE
        elif progress.last_key is not None:
            saved = key_to_json(progress.last_key)
        else:
            return  # not started: nothing to remember
        self._save_positions(self._progress_id(scan), {scan.target: saved})

    def clear_progress(self, scan: ScanSegment) -> None:
        """Forget the segment's progress: a new copy starts from the beginning."""
        self._save_positions(self._progress_id(scan), {scan.target: _SCAN_NONE})

    def load_note(self, name: str) -> str | None:
        """A short text a command keeps between its runs (``note:NAME``), None if absent."""
        return self._load_positions(f"note:{name}").get("note")

    def save_note(self, name: str, text: str) -> None:
        """Keep ``text`` under ``name`` (see ``load_note``)."""
        self._save_positions(f"note:{name}", {"note": text})

    def _load_positions(self, name: str) -> dict[str, str]:
        key = {"pk": {"S": f"cp|{name}"}}
        item = self._call(
            "GetItem",
            lambda: self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True),
        ).get("Item", {})
        return _positions(item)

    def _save_positions(self, name: str, positions: Mapping[str, str]) -> None:
        if not positions:
            return
        names = {f"#p{i}": f"pos#{target}" for i, target in enumerate(positions)}
        values = {f":p{i}": {"S": seq} for i, seq in enumerate(positions.values())}
        assignments = ", ".join(f"#p{i} = :p{i}" for i in range(len(positions)))
        key = {"pk": {"S": f"cp|{name}"}}
        self._call(
            "UpdateItem",
            lambda: self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=f"SET {assignments}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )

    # -- leases ------------------------------------------------------------------------
    def _lease_key(self, shard: ShardRef) -> dict[str, Any]:
        return {"pk": {"S": f"lease|{_lease_id(shard)}"}}

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
        held = self._held.get(_lease_id(shard))
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
        self._held[_lease_id(shard)] = (owner, item["token"]["N"])
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
        held = self._held.get(_lease_id(shard))
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
        if (_attr(item, "owner", "S"), _attr(item, "token", "N")) != held:
            self._held.pop(_lease_id(shard), None)
            return False
        return int(_attr(item, "expires", "N") or 0) >= expires_ms

    def release(self, shard: ShardRef, owner: str) -> None:
        """Hand the lease back: it expires now, and its token moves on, so that a renewal
        sent before and landing after the release is refused (not given its expiry back).
        The token is forgotten once the table answered (applied or refused), not when the
        request failed: a retry then sends the same condition, and of two attempts that
        both land, the second finds the token moved and is refused."""
        held = self._held.get(_lease_id(shard))
        if held is None or held[0] != owner:
            return
        values = {":token": {"N": held[1]}, ":one": {"N": "1"}}
        condition = "#owner = :me AND #token = :token"
        self._lease_update(shard, owner, 0, condition, values=values, update=" ADD #token :one")
        if self._held.get(_lease_id(shard)) == held:
            self._held.pop(_lease_id(shard), None)

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

    def checkpoint_items(self, table: str) -> list[dict[str, Any]]:
        """The items holding ``table``'s checkpoints (``pos#TARGET`` attributes): the lease
        items, and the ``cp|`` items of earlier versions."""
        items = self.scan(f"lease|{table}|") + self.scan(f"cp|{table}|")
        return [item for item in items if any(name.startswith("pos#") for name in item)]

    def leases(self) -> dict[str, tuple[str, int]]:
        """Every lease: shard key -> (owner, expires ms)."""
        return {
            item["pk"]["S"].split("|", 1)[1]: (item["owner"]["S"], int(item["expires"]["N"]))
            for item in self.scan("lease|")
            if "owner" in item  # add-region may seed positions of a shard nobody leased yet
        }

    # -- workers -----------------------------------------------------------------------
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
            if _attr(held, "instance", "S") == instance:
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

    def put(self, item: Mapping[str, Any]) -> None:
        """Write one whole item (the runner's shard reports)."""
        self._call("PutItem", lambda: self.client.put_item(TableName=self.table, Item=dict(item)))

    def forget_worker(self, worker: str, *, instance: str = "") -> None:
        """Remove ``worker|ID`` (with an ``instance``: only this process's claim)."""
        key = {"pk": {"S": f"worker|{worker}"}}
        if not instance:
            self._call("DeleteItem", lambda: self.client.delete_item(TableName=self.table, Key=key))
            return
        with contextlib.suppress(ConditionFailedError):  # another process's claim stays
            self._call(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="attribute_not_exists(pk) OR #instance = :me",
                    ExpressionAttributeNames={"#instance": "instance"},
                    ExpressionAttributeValues={":me": {"S": instance}},
                ),
            )

    def scan(self, prefix: str) -> list[dict[str, Any]]:
        """Every item whose key starts with ``prefix`` (strongly consistent)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": prefix}},
        }
        while True:
            page = self._call("Scan", lambda k=dict(kwargs): self.client.scan(**k))  # type: ignore[misc]
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _lease_id(shard: ShardRef) -> str:
    return f"{shard.table}|{shard.stream_label}|{shard.shard_id}"


def _attr(item: Mapping[str, Any], name: str, kind: str) -> str | None:
    """An attribute's value as stored (its DynamoDB type ``kind``), None when absent."""
    value: str | None = item.get(name, {}).get(kind)
    return value


def _positions(item: Mapping[str, Any]) -> dict[str, str]:
    return {
        name.split("#", 1)[1]: value["S"] for name, value in item.items() if name.startswith("pos#")
    }


def _ahead(position: str, saved: str) -> bool:
    return _order(position) > _order(saved)
