"""Three regions on DynamoDB Local, real stream records, the real Lambda handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, REGIONS, StreamPump, comparable, create_table, scan

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
BIG = "12345678901234567890123456789012345678"  # 38 significant digits
SYSTEM = FIELDS.added()


@pytest.fixture(scope="module")
def clients(ddb_local: DynamoDBLocal) -> Iterator[dict[str, Any]]:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Orders", (("pk", "S"), ("sk", "N")), region=region)
        create_table(client, "Blobs", (("id", "B"),), region=region)
    yield clients


def put(client: Any, table: str, item: dict[str, Any]) -> None:
    client.put_item(TableName=table, Item=item)


def order(pk: str, ts: str, **attributes: Any) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"N": "1"}, FIELDS.timestamp: {"N": ts}}
    item.update(attributes)
    return item


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


def rich_attributes() -> dict[str, Any]:
    return {
        "big": {"N": BIG},
        "tiny": {"N": "-1E-130"},
        "names": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", BIG]},
        "blobs": {"BS": [b"\x00\xff", b"\x01"]},
        "list": {"L": [{"S": "x"}, {"N": "2"}, {"NULL": True}, {"B": b"\x00"}]},
        "map": {"M": {"nested": {"M": {"flag": {"BOOL": False}}}, "nothing": {"NULL": True}}},
        "unicode": {"S": "grüße ☃ 𝄞"},
    }


def test_three_regions_converge_to_the_expected_winners(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    us, eu, ap = clients[US], clients[EU], clients[AP]
    pump = StreamPump(ddb_local.endpoint_url, "Orders")

    # Concurrent writes of one key: the larger timestamp wins.
    put(us, "Orders", order("conflict", "100", who={"S": "us"}, **rich_attributes()))
    put(eu, "Orders", order("conflict", "101", who={"S": "eu"}))
    # Equal timestamps in all three regions: the largest region name (us-east-1) wins.
    for region, client in clients.items():
        put(client, "Orders", order("tie", "200", who={"S": region}))
    # Rich attribute types survive byte for byte.
    put(ap, "Orders", order("rich", "150", **rich_attributes()))
    # The server normalises Numbers on write; what the origin stores must arrive everywhere.
    rich_as_stored = ap.get_item(TableName="Orders", Key=key("rich"), ConsistentRead=True)["Item"]
    # Items to delete, update and regress later.
    put(us, "Orders", order("deleted", "300"))
    put(us, "Orders", order("concurrent", "400", v={"S": "old"}))
    put(us, "Orders", order("partial", "700", a={"N": "1"}, b={"N": "2"}))
    put(us, "Orders", order("regressed", "800", v={"S": "winner"}))
    put(us, "Orders", order("after-delete", "900"))
    pump.run_until_quiet(monkeypatch)

    # A delete removes the version it saw everywhere.
    ap.delete_item(TableName="Orders", Key=key("deleted"))
    # A delete races a newer write elsewhere: the newer write survives.
    eu.delete_item(TableName="Orders", Key=key("concurrent"))
    put(ap, "Orders", order("concurrent", "401", v={"S": "new"}))
    # An application's partial update of a replicated item is replicated too.
    eu.update_item(
        TableName="Orders",
        Key=key("partial"),
        UpdateExpression="SET b = :b, #ts = :ts",
        ExpressionAttributeNames={"#ts": FIELDS.timestamp},
        ExpressionAttributeValues={":b": {"N": "3"}, ":ts": {"N": "701"}},
    )
    # A write older than what it replaced (clock skew) loses, in its own region too.
    put(eu, "Orders", order("regressed", "750", v={"S": "loser"}))
    us.delete_item(TableName="Orders", Key=key("after-delete"))
    pump.run_until_quiet(monkeypatch)

    # A write older than a delete its region remembers loses as well.
    put(eu, "Orders", order("after-delete", "850"))
    pump.run_until_quiet(monkeypatch)

    expected = {
        "conflict": order("conflict", "101", who={"S": "eu"}),
        "tie": order("tie", "200", who={"S": US}),
        "rich": rich_as_stored,
        "concurrent": order("concurrent", "401", v={"S": "new"}),
        "partial": order("partial", "701", a={"N": "1"}, b={"N": "3"}),
        "regressed": order("regressed", "800", v={"S": "winner"}),
    }
    want = comparable(list(expected.values()), drop=SYSTEM)
    for region, client in clients.items():
        assert comparable(scan(client, "Orders"), drop=SYSTEM) == want, region
    big = us.get_item(TableName="Orders", Key=key("rich"))["Item"]["big"]
    assert big == {"N": BIG}


def test_a_late_older_version_never_resurrects_a_delete(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    us, eu = clients[US], clients[EU]
    everyone = StreamPump(ddb_local.endpoint_url, "Orders")
    everyone.run_until_quiet(monkeypatch)  # start from a quiet stream
    to_eu = StreamPump(ddb_local.endpoint_url, "Orders", only_targets=[EU])
    to_ap = StreamPump(ddb_local.endpoint_url, "Orders", only_targets=[AP])
    for pump in (to_eu, to_ap):  # skip history: each pump starts at the current end
        for region in REGIONS:
            pump.read(region)

    put(us, "Orders", order("late", "600"))
    to_eu.deliver_from(US, monkeypatch)  # only eu-west-1 hears of it
    eu.delete_item(TableName="Orders", Key=key("late"))
    to_eu.deliver_from(EU, monkeypatch)
    to_ap.deliver_from(EU, monkeypatch)  # ap-southeast-1 hears of the delete first
    to_ap.deliver_from(US, monkeypatch)  # ...and of the older write only now
    everyone.run_until_quiet(monkeypatch)

    for region, client in clients.items():
        assert "Item" not in client.get_item(TableName="Orders", Key=key("late")), region


def test_an_update_hitting_a_replicas_timestamp_is_replicated_not_dropped(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 29, interleaving 1, through the handler: ap-southeast-1's application updates
    the replica of 1000@us-east-1 and its clock gives exactly 1000. The update is its own
    write, not an echo: it loses to us-east-1 (the larger name) and us-east-1's content
    is restored in ap-southeast-1; an item of the earlier scheme (no nonce) in the same
    table is read as before."""
    ap = clients[AP]
    pump = StreamPump(ddb_local.endpoint_url, "Orders")
    pump.run_until_quiet(monkeypatch)
    put(clients[US], "Orders", order("hit", "1000", who={"S": "us"}))
    # Written by the earlier scheme: marker and origin, no nonce, no seq.
    legacy = order("legacy", "1000", who={"S": "eu"}, **{FIELDS.origin: {"S": EU}})
    legacy[FIELDS.marker] = {"N": "1000"}
    for client in clients.values():
        put(client, "Orders", legacy)
    pump.run_until_quiet(monkeypatch)
    replica = ap.get_item(TableName="Orders", Key=key("hit"), ConsistentRead=True)["Item"]
    assert replica["who"] == {"S": "us"} and FIELDS.nonce in replica
    ap.update_item(
        TableName="Orders",
        Key=key("hit"),
        UpdateExpression="SET #t = :t, who = :w",
        ExpressionAttributeNames={"#t": FIELDS.timestamp},
        ExpressionAttributeValues={":t": {"N": "1000"}, ":w": {"S": "ap"}},
    )
    pump.run_until_quiet(monkeypatch)
    for region, client in clients.items():
        found = client.get_item(TableName="Orders", Key=key("hit"), ConsistentRead=True)["Item"]
        assert found["who"] == {"S": "us"}, region
        old = client.get_item(TableName="Orders", Key=key("legacy"), ConsistentRead=True)["Item"]
        assert old["who"] == {"S": "eu"}, region
    # An application update of the earlier-scheme item with a newer timestamp replicates.
    ap.update_item(
        TableName="Orders",
        Key=key("legacy"),
        UpdateExpression="SET #t = :t, who = :w",
        ExpressionAttributeNames={"#t": FIELDS.timestamp},
        ExpressionAttributeValues={":t": {"N": "1001"}, ":w": {"S": "ap"}},
    )
    pump.run_until_quiet(monkeypatch)
    for region, client in clients.items():
        old = client.get_item(TableName="Orders", Key=key("legacy"), ConsistentRead=True)["Item"]
        assert (old["who"], old[FIELDS.timestamp]) == ({"S": "ap"}, {"N": "1001"}), region


def test_binary_keys_replicate(
    ddb_local: DynamoDBLocal, clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ap = clients[AP]
    pump = StreamPump(ddb_local.endpoint_url, "Blobs")
    for raw in (b"\x00\x01", b"\xff" * 16, b"plain"):
        put(ap, "Blobs", {"id": {"B": raw}, FIELDS.timestamp: {"N": "1"}, "payload": {"B": raw}})
    ap.delete_item(TableName="Blobs", Key={"id": {"B": b"plain"}})
    pump.run_until_quiet(monkeypatch)
    want = sorted([b"\x00\x01", b"\xff" * 16])
    for region, client in clients.items():
        assert sorted(i["id"]["B"] for i in scan(client, "Blobs")) == want, region
        assert all(i["payload"] == i["id"] for i in scan(client, "Blobs")), region
