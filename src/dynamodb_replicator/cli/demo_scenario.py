"""The demo's scenario: its regions and table, the writes of each round, the winners every
region must hold after it (written out by hand, not derived by the replicator's rules), and
how the regions' items are read and compared with them."""

from __future__ import annotations

import json
from typing import Any

from dynamodb_replicator.core.model import SystemAttributes

__all__ = [
    "EXPECTED",
    "EXPLANATIONS",
    "FIELDS",
    "REGIONS",
    "ROUNDS",
    "TABLE",
    "holds",
    "identical",
    "state",
    "write",
]

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
TABLE = "Orders"
FIELDS = SystemAttributes()

# (region, action, key, milliseconds after the demo's start, attributes)
ROUNDS: list[list[tuple[str, str, str, int, dict[str, str]]]] = [
    [
        ("us-east-1", "put", "order-1", 0, {"status": "placed", "total": "20"}),
        ("eu-west-1", "put", "order-1", 5, {"status": "paid", "total": "20"}),
        ("us-east-1", "put", "order-2", 10, {"status": "placed"}),
        ("eu-west-1", "put", "order-2", 10, {"status": "shipped"}),
        ("ap-southeast-1", "put", "order-2", 10, {"status": "cancelled"}),
        ("ap-southeast-1", "put", "order-3", 20, {"status": "placed"}),
        ("us-east-1", "put", "order-4", 30, {"status": "placed", "total": "5"}),
    ],
    [
        ("eu-west-1", "delete", "order-3", 0, {}),
        ("ap-southeast-1", "update", "order-4", 40, {"status": "gift-wrapped"}),
    ],
]
# The winners every region must hold after each round, written out by hand (not derived
# by the replicator's own rules): key -> attributes; a key left out is absent everywhere.
EXPECTED: list[dict[str, dict[str, str]]] = [
    {
        "order-1": {"status": "paid", "total": "20"},  # the larger __timestamp
        "order-2": {"status": "placed"},  # the tie: us-east-1, the largest region name
        "order-3": {"status": "placed"},
        "order-4": {"status": "placed", "total": "5"},
    },
    {
        "order-1": {"status": "paid", "total": "20"},
        "order-2": {"status": "placed"},
        "order-4": {"status": "gift-wrapped", "total": "5"},  # the partial update
    },
]
EXPLANATIONS = {
    "order-1": "eu-west-1 wrote 5 ms after us-east-1: the larger __timestamp wins.",
    "order-2": "three writes with the same __timestamp: the tie goes to the largest region "
    "name, us-east-1, in every region.",
    "order-3": "written in ap-southeast-1, deleted in eu-west-1: the delete removed that "
    "version everywhere and is remembered, so no late copy can bring it back.",
    "order-4": "written in us-east-1, then partially updated in ap-southeast-1 (status only, "
    "newer __timestamp): the update is replicated although the item still carried "
    "__originRegion=us-east-1, and total survives.",
}


def write(client: Any, action: str, key: str, stamp: int, attributes: dict[str, str]) -> None:
    """One of a round's writes: a put, an update (SET) or a delete of ``key`` at ``stamp``."""
    pk = {"pk": {"S": key}}
    if action == "put":
        item = {**pk, FIELDS.timestamp: {"N": str(stamp)}}
        item.update({name: {"S": value} for name, value in attributes.items()})
        client.put_item(TableName=TABLE, Item=item)
    elif action == "update":
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": {"S": value} for i, value in enumerate(attributes.values())}
        sets = ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
        client.update_item(
            TableName=TABLE,
            Key=pk,
            UpdateExpression=f"SET {sets}, #ts = :ts",
            ExpressionAttributeNames={**names, "#ts": FIELDS.timestamp},
            ExpressionAttributeValues={**values, ":ts": {"N": str(stamp)}},
        )
    else:
        client.delete_item(TableName=TABLE, Key=pk)


def _user(item: dict[str, Any]) -> dict[str, Any]:
    """What the application sees of ``item``: no replicator attributes."""
    return {k: v for k, v in item.items() if k not in FIELDS.added()}


def state(clients: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every region's items by key (strongly consistent scans)."""
    return {
        region: {
            item["pk"]["S"]: item
            for item in client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
        }
        for region, client in clients.items()
    }


def holds(state: dict[str, dict[str, Any]], expected: dict[str, dict[str, str]]) -> bool:
    """Every region holds exactly the ``expected`` winners."""
    want = {key: {"pk": key, **attributes} for key, attributes in expected.items()}
    return all(
        {
            key: {
                k: next(iter(v.values())) for k, v in _user(item).items() if k != FIELDS.timestamp
            }
            for key, item in items.items()
        }
        == want
        for items in state.values()
    )


def identical(state: dict[str, dict[str, Any]]) -> bool:
    """Every region holds the same items (the replicator's attributes left out)."""
    canonical = {
        json.dumps({k: _user(v) for k, v in items.items()}, sort_keys=True)
        for items in state.values()
    }
    return len(canonical) == 1
