"""``stamp(client)``: every write made through a boto3 DynamoDB client (or resource, or
Table) carries a fresh ``__timestamp``, so an application adopts the data contract with one
line and no other change.

It registers a botocore ``before-parameter-build`` handler, last, so it sees requests in
the low-level form (a resource has serialized its Python values by then). Timestamps are
epoch milliseconds, strictly increasing within the process. An explicit ``__timestamp`` (an
update expression writing it; a put's Item carrying one) is left alone, except a put's that
equals the Item's marker: a replica read back and put again. An update removing it is
refused (ConfigError). An UpdateItem with any legacy parameter (AttributeUpdates, Expected,
ConditionalOperator) is stamped through AttributeUpdates: DynamoDB refuses a mix of forms.
PartiQL statements cannot be stamped: they get a warning. The request is rewritten on
copies: the caller's dicts are never changed.

Every PutItem and UpdateItem it sees also drops the replica marker (``__replicaTimestamp``):
only the replicator writes it, and an application write that kept it and landed exactly on
the replica's timestamp would read, to the replicator's conditions, as that replica (a
"disguised" item; docs/concepts/guarantees.md). Unmarked, the item reads as what it is,
content written in this region, and its stream record as an application write (the codec
needs the marker to call a record a replica write). Same write, same write units.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import SystemAttributes, parse_number
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.update_expression import extended, free, written

__all__ = ["Stamper", "replicators_client", "stamp"]

log = logging.getLogger(__name__)

_NAME, _VALUE = "#replicatorTimestamp", ":replicatorTimestamp"
_MARKER = "#replicatorMarker"
_PARTIQL = {"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"}
_LEGACY = {"AttributeUpdates", "Expected", "ConditionalOperator"}


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
# Clients stamped, and clients the replicator's stores use: one client is never both (the
# replicator's puts carry the marker, which the stamper strips). Weak: no client is kept.
_STAMPED: weakref.WeakSet[Any] = weakref.WeakSet()
_REPLICATORS: weakref.WeakSet[Any] = weakref.WeakSet()


class Stamper:
    """Adds ``__timestamp`` (epoch ms, strictly increasing) to write requests. It replaces
    the request's top-level entries (botocore's own dict) and never changes the caller's
    nested dicts: an Item put again must not carry the last put's timestamp."""

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
        """Stamp a PutItem (or a batch's or transaction's Put): a copy of its Item."""
        item = params.get("Item")
        if isinstance(item, dict):
            params["Item"] = self._item(item)

    def _item(self, item: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``item`` with a timestamp and without the marker. A timestamp equal
        to the item's marker is a replica's, read back and put again (read-modify-write),
        not one the application chose: it gets a fresh one too (docs/concepts/data-
        contract.md), else the put would read as (replica's timestamp, this region)."""
        stamped = dict(item)
        marker = stamped.pop(self.marker, None)
        explicit = stamped.get(self.attribute)
        if explicit is None or _same_number(explicit, marker):
            stamped[self.attribute] = {"N": self.next()}
        return stamped

    def update(self, params: dict[str, Any]) -> None:
        """Stamp an UpdateItem unless its update writes the timestamp itself, and drop the
        marker unless it writes the marker itself (a path may be written by one action
        only). Conditions may name either: they only read. An update that removes the
        timestamp is refused (ConfigError): it would leave the item without one."""
        # Expected and ConditionalOperator are legacy parameters too: DynamoDB refuses
        # them beside an UpdateExpression, so such a request is stamped the legacy way.
        if _LEGACY & params.keys():
            self._legacy_update(params)
        else:
            self._expression_update(params)

    def _legacy_update(self, params: dict[str, Any]) -> None:
        """Stamp an UpdateItem in the legacy form (AttributeUpdates)."""
        updates = dict(params.get("AttributeUpdates", {}))
        action = updates.get(self.attribute)
        if isinstance(action, dict) and action.get("Action") == "DELETE":
            self._refuse_removal()
        updates.setdefault(self.attribute, {"Value": {"N": self.next()}, "Action": "PUT"})
        updates.setdefault(self.marker, {"Action": "DELETE"})
        params["AttributeUpdates"] = updates

    def _expression_update(self, params: dict[str, Any]) -> None:
        """Stamp an UpdateItem in the expression form (UpdateExpression)."""
        names = dict(params.get("ExpressionAttributeNames", {}))
        values = dict(params.get("ExpressionAttributeValues", {}))
        expression: str = params.get("UpdateExpression", "")
        if self.attribute in written(expression, names, {"REMOVE"}):
            self._refuse_removal()
        writes = written(expression, names)
        if self.attribute not in writes:
            name, value = free(_NAME, names), free(_VALUE, values)
            names[name], values[value] = self.attribute, {"N": self.next()}
            expression = extended(expression, "SET", f"{name} = {value}")
        if self.marker not in writes:
            name = free(_MARKER, names)
            names[name] = self.marker
            expression = extended(expression, "REMOVE", name)
        params["UpdateExpression"] = expression
        params["ExpressionAttributeNames"] = names
        if values:  # DynamoDB refuses an empty map
            params["ExpressionAttributeValues"] = values

    def _refuse_removal(self) -> None:
        """Refused, not rewritten into a fresh stamp: the caller asked for the opposite of
        a timestamp, and quietly changing a write's meaning hides the bug that asked. Sent,
        the item would have no timestamp and be parked, never replicated."""
        raise ConfigError(
            f"stamp(): an UpdateItem removes {self.attribute}; an item must keep one "
            f"(set it or leave it to the stamper)"
        )

    def batch_write(self, params: dict[str, Any]) -> None:
        """Stamp a BatchWriteItem's puts (copies of its request lists)."""
        requests = params.get("RequestItems")
        if isinstance(requests, dict):
            params["RequestItems"] = {
                table: [self._entry(entry, "PutRequest") for entry in entries]
                for table, entries in requests.items()
            }

    def transact_write(self, params: dict[str, Any]) -> None:
        """Stamp a TransactWriteItems' puts and updates (a copy of its list)."""
        entries = params.get("TransactItems")
        if isinstance(entries, list):
            params["TransactItems"] = [
                self._entry(self._entry(entry, "Put"), "Update") for entry in entries
            ]

    def _entry(self, entry: Any, kind: str) -> Any:
        """``entry`` with a stamped copy of its ``kind`` request, if it has one."""
        if not isinstance(entry, dict) or not isinstance(entry.get(kind), dict):
            return entry
        request = dict(entry[kind])
        (self.update if kind == "Update" else self.put)(request)
        return {**entry, kind: request}


def _same_number(a: Any, b: Any) -> bool:
    """Two attribute values that are the same number."""
    if not (isinstance(a, dict) and isinstance(b, dict) and "N" in a and "N" in b):
        return False
    x, y = parse_number(a["N"]), parse_number(b["N"])
    return x is not None and x == y


def stamp(
    target: Any, *, clock: Clock | None = None, fields: SystemAttributes | None = None
) -> Stamper:
    """Stamp every write made through ``target``: a boto3 DynamoDB client, the
    ``boto3.resource("dynamodb")`` service resource, or one of its ``Table`` objects (they
    share the resource's client). Returns the stamper (its ``next()`` gives timestamps for
    writes made some other way)."""
    client = target.meta.client if hasattr(target.meta, "client") else target
    if client in _REPLICATORS:
        raise ConfigError("stamp(): this client writes the replicator's own items; stamp another")
    _STAMPED.add(client)
    stamper = Stamper(clock, fields)
    client.meta.events.register_last("before-parameter-build.dynamodb", stamper)
    return stamper


def replicators_client(client: Any) -> Any:
    """``client``, recorded as one the replicator writes with (``stamp()`` then refuses
    it); a client already stamped is refused: its puts would lose the marker."""
    if client in _STAMPED:
        raise ConfigError("a stamped client cannot write the replicator's items; pass another")
    with contextlib.suppress(TypeError):  # no weak reference to it: no boto3 client, unstamped
        _REPLICATORS.add(client)
    return client
