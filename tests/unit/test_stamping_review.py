"""Adversarial review of ``stamp()`` dropping the replica marker (branch h-eqv): requests
whose rewriting is wrong, and the interleavings they end in. Each defect is a strict xfail."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, ConditionExpressionBuilder

from dynamodb_replicator.core.model import ItemKey
from dynamodb_replicator.stamping import Stamper, stamp
from dynamodb_replicator.testing.clock import ManualClock

from .strategies import FIELDS
from .stream_regions import AP, EU, US, StreamRegions, T, n, s

STAMP = "#replicatorTimestamp = :replicatorTimestamp"


class Model:
    def __init__(self, name: str) -> None:
        self.name = name


# A clock one second after every timestamp the scenarios use.
AFTER = T / 1000 + 1


def stamped(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    Stamper(ManualClock(AFTER), FIELDS)(params, Model(operation))
    return params


def optimistic(seen: int) -> dict[str, Any]:
    """``table.update_item(UpdateExpression="SET writer = :w",
    ConditionExpression=Attr("__timestamp").eq(seen))`` as the resource builds it (the
    condition's names are placeholders ``#n0``), before the stamper runs."""
    built = ConditionExpressionBuilder().build_expression(Attr(FIELDS.timestamp).eq(seen))
    values = {name: n(int(value)) for name, value in built.attribute_value_placeholders.items()}
    return {
        "UpdateExpression": "SET writer = :w",
        "ConditionExpression": built.condition_expression,
        "ExpressionAttributeNames": dict(built.attribute_name_placeholders),
        "ExpressionAttributeValues": {**values, ":w": s(AP)},
    }


def apply_update(regions: StreamRegions, region: str, key: ItemKey, params: dict[str, Any]) -> None:
    """Apply a (rewritten) UpdateItem's SET and REMOVE clauses to ``region``'s item."""
    names = params.get("ExpressionAttributeNames", {})
    values = params["ExpressionAttributeValues"]
    item = dict(regions.stores[region].item("T", key) or key.to_attributes())
    clauses = re.split(r"\b(SET|REMOVE)\b", params["UpdateExpression"])[1:]
    for verb, body in zip(clauses[::2], clauses[1::2], strict=True):
        for part in filter(None, (p.strip() for p in body.split(","))):
            if verb == "SET":
                name, value = (side.strip() for side in part.split("="))
                item[names.get(name, name)] = values[value]
            else:
                item.pop(names.get(part, part), None)
    regions.stores[region].write_directly("T", key, item)


def test_an_update_conditioned_on_the_timestamp_gets_a_fresh_one() -> None:
    params = stamped("UpdateItem", optimistic(T))
    assert params["UpdateExpression"].startswith(f"SET {STAMP}")
    assert params["ExpressionAttributeValues"][":replicatorTimestamp"] == n(T + 1000)


def test_an_optimistic_lock_update_of_a_replica_survives_everywhere(
    regions: StreamRegions,
) -> None:
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.pump(US)
    apply_update(regions, AP, k, stamped("UpdateItem", optimistic(T)))
    regions.quiesce()
    assert {r: (c or {}).get("writer") for r, c in regions.contents(k).items()} == {
        AP: s(AP),
        EU: s(AP),
        US: s(AP),
    }


def test_an_update_conditioned_on_the_marker_still_drops_it() -> None:
    built = ConditionExpressionBuilder().build_expression(Attr(FIELDS.marker).exists())
    params = stamped(
        "UpdateItem",
        {
            "UpdateExpression": "SET writer = :w",
            "ConditionExpression": built.condition_expression,
            "ExpressionAttributeNames": dict(built.attribute_name_placeholders),
            "ExpressionAttributeValues": {":w": s(AP)},
        },
    )
    assert re.search(r"\bREMOVE\b", params["UpdateExpression"])


def test_a_placeholder_named_set_is_no_set_clause() -> None:
    params = stamped(
        "UpdateItem",
        {"UpdateExpression": "ADD #set :one", "ExpressionAttributeNames": {"#set": "set"}},
    )
    assert params["UpdateExpression"] == f"SET {STAMP} ADD #set :one REMOVE #replicatorMarker"


def test_an_application_placeholder_named_like_the_stampers_keeps_its_meaning() -> None:
    params = stamped(
        "UpdateItem",
        {
            "UpdateExpression": "SET #replicatorMarker = :v",
            "ExpressionAttributeNames": {"#replicatorMarker": "note"},
            "ExpressionAttributeValues": {":v": s("x")},
        },
    )
    names = params["ExpressionAttributeNames"]
    assert "note" in names.values()
    assert names.get("#replicatorMarker", "note") == "note"


def test_a_read_modify_write_put_of_a_replica_survives_everywhere(
    regions: StreamRegions,
) -> None:
    k = regions.key("k")
    regions.put(US, k, **{FIELDS.timestamp: n(T), "writer": s(US)})
    regions.pump(US)
    read = dict(regions.stores[AP].item("T", k) or {})
    read["writer"] = s(AP)
    params = stamped("PutItem", {"Item": read})
    regions.stores[AP].write_directly("T", k, params["Item"])
    regions.quiesce()
    assert {r: (c or {}).get("writer") for r, c in regions.contents(k).items()} == {
        AP: s(AP),
        EU: s(AP),
        US: s(AP),
    }


class _Unsent(Exception):
    """Raised before the request is sent: these tests need no server."""


def test_a_low_level_put_of_the_same_item_dict_again_gets_a_later_timestamp() -> None:
    client = boto3.client(
        "dynamodb", region_name=US, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stamp(client, clock=ManualClock(AFTER), fields=FIELDS)
    sent: list[int] = []

    def unsent(params: dict[str, Any], **_: Any) -> None:
        sent.append(int(json.loads(params["body"])["Item"][FIELDS.timestamp]["N"]))
        raise _Unsent

    client.meta.events.register("before-call.dynamodb.PutItem", unsent)
    item = {"pk": s("k"), "writer": s("first")}
    for writer in ("first", "second"):
        item["writer"] = s(writer)
        with pytest.raises(_Unsent):
            client.put_item(TableName="T", Item=item)
    assert sent[1] > sent[0]
