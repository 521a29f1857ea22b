"""``stamp(client)``: every write made through a boto3 DynamoDB client (or resource, or
Table) carries a fresh ``__timestamp``, so an application adopts the data contract with one
line and no other change.

It registers a botocore ``before-parameter-build`` handler, last, so it sees requests in
the low-level form (a resource has serialized its Python values by then). Timestamps are
epoch milliseconds, strictly increasing within the process. An explicit ``__timestamp`` is
left alone. PartiQL statements cannot be stamped: they get a warning.

Every PutItem and UpdateItem it sees also drops the replica marker (``__replicaTimestamp``):
only the replicator writes it, and an application write that kept it and landed exactly on
the replica's timestamp would read, to the replicator's conditions, as that replica (a
"disguised" item; docs/concepts/guarantees.md). Unmarked, the item reads as what it is,
content written in this region, and its stream record as an application write (the codec
needs the marker to call a record a replica write). Same write, same write units.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.model import SystemAttributes
from dynamodb_replicator.core.ports import Clock

__all__ = ["Stamper", "stamp"]

log = logging.getLogger(__name__)

_SET = re.compile(r"\bSET\b", re.IGNORECASE)
# A REMOVE clause keyword, not a placeholder such as ``:remove`` or ``#remove``.
_REMOVE = re.compile(r"(?<![#:\w])REMOVE\b", re.IGNORECASE)
_NAME, _VALUE = "#replicatorTimestamp", ":replicatorTimestamp"
_MARKER = "#replicatorMarker"
_PARTIQL = {"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"}


class _Sequence:
    """The process's last timestamp: every stamper's next one is larger."""

    def __init__(self) -> None:
        self.last = 0
        self.lock = threading.Lock()

    def after(self, now_ms: int) -> int:
        with self.lock:
            self.last = max(now_ms, self.last + 1)
            return self.last


_SEQUENCE = _Sequence()


class Stamper:
    """Adds ``__timestamp`` (epoch ms, strictly increasing) to write requests in place."""

    def __init__(self, clock: Clock | None = None, fields: SystemAttributes | None = None) -> None:
        self.clock = clock or SystemClock()
        fields = fields or SystemAttributes()
        self.attribute = fields.timestamp
        self.marker = fields.marker

    def next(self) -> str:
        """A timestamp larger than every one given before in this process."""
        return str(_SEQUENCE.after(int(self.clock.now() * 1000)))

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        """The botocore event handler."""
        operation = getattr(model, "name", "")
        handle = self._handlers().get(operation)
        if handle is not None:
            handle(params)
        elif operation in _PARTIQL:
            log.warning(
                "a PartiQL write cannot be stamped: set %s in the statement", self.attribute
            )

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        return {
            "PutItem": self.put,
            "UpdateItem": self.update,
            "BatchWriteItem": self.batch_write,
            "TransactWriteItems": self.transact_write,
        }

    def put(self, params: dict[str, Any]) -> None:
        item = params.get("Item")
        if isinstance(item, dict):
            if self.attribute not in item:
                item[self.attribute] = {"N": self.next()}
            item.pop(self.marker, None)  # a copy of a replica read back: not a replica

    def update(self, params: dict[str, Any]) -> None:
        self._stamp_update(params)
        self._unmark_update(params)

    def _unmark_update(self, params: dict[str, Any]) -> None:
        """Add ``REMOVE <marker>`` (legacy form: a DELETE action), unless the request names
        the marker itself (a path may appear in one clause only)."""
        if "AttributeUpdates" in params:
            params["AttributeUpdates"].setdefault(self.marker, {"Action": "DELETE"})
            return
        names: dict[str, str] = params.get("ExpressionAttributeNames", {})
        expression: str = params.get("UpdateExpression", "")
        if self.marker in names.values() or re.search(rf"\b{self.marker}\b", expression):
            return
        params["ExpressionAttributeNames"] = {**names, _MARKER: self.marker}
        match = _REMOVE.search(expression)
        if match is None:
            params["UpdateExpression"] = f"{expression} REMOVE {_MARKER}".strip()
        else:
            at = match.end()
            params["UpdateExpression"] = f"{expression[:at]} {_MARKER},{expression[at:]}"

    def _stamp_update(self, params: dict[str, Any]) -> None:
        if "AttributeUpdates" in params:  # the legacy form
            updates = params["AttributeUpdates"]
            if self.attribute not in updates:
                updates[self.attribute] = {"Value": {"N": self.next()}, "Action": "PUT"}
            return
        names: dict[str, str] = params.get("ExpressionAttributeNames", {})
        expression: str = params.get("UpdateExpression", "")
        if self.attribute in names.values() or re.search(rf"\b{self.attribute}\b", expression):
            return  # the application sets it itself
        params["ExpressionAttributeNames"] = {**names, _NAME: self.attribute}
        params.setdefault("ExpressionAttributeValues", {})[_VALUE] = {"N": self.next()}
        clause = f"{_NAME} = {_VALUE}"
        match = _SET.search(expression)
        if match is None:
            params["UpdateExpression"] = f"SET {clause} {expression}".strip()
        else:
            at = match.end()
            params["UpdateExpression"] = f"{expression[:at]} {clause},{expression[at:]}"

    def batch_write(self, params: dict[str, Any]) -> None:
        for requests in params.get("RequestItems", {}).values():
            for request in requests:
                if "PutRequest" in request:
                    self.put(request["PutRequest"])

    def transact_write(self, params: dict[str, Any]) -> None:
        for entry in params.get("TransactItems", []):
            if "Put" in entry:
                self.put(entry["Put"])
            elif "Update" in entry:
                self.update(entry["Update"])


def stamp(
    target: Any, *, clock: Clock | None = None, fields: SystemAttributes | None = None
) -> Stamper:
    """Stamp every write made through ``target``: a boto3 DynamoDB client, the
    ``boto3.resource("dynamodb")`` service resource, or one of its ``Table`` objects (they
    share the resource's client). Returns the stamper (its ``next()`` gives timestamps for
    writes made some other way)."""
    client = target.meta.client if hasattr(target.meta, "client") else target
    stamper = Stamper(clock, fields)
    client.meta.events.register_last("before-parameter-build.dynamodb", stamper)
    return stamper
