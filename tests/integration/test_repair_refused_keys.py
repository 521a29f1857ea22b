"""``repair`` counts a key as refused (exit 1) when a region's writer reports that key's
write stale and the key's re-read decision still asks that region for the same write (the
same kind, timestamp and origin; a put: the same content). Only those keys are re-read, so
a key whose write landed and was then undone by the region's application before the
replicator remembered it is not named; and the seq is not compared, so a refused delete
whose D1 landed is still counted. A delete over a copy its region's application updated
keeping the marker (its nonce a string) is no refusal: it lands (D2s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.factory import build_writer
from dynamodb_replicator.cli.repair import build_repairer
from dynamodb_replicator.core.model import RegionSpec, pad_sequence
from dynamodb_replicator.core.plan import WriteOp
from dynamodb_replicator.core.policy import seal
from dynamodb_replicator.core.residency import Residency, ResidencyRule
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.writer import StoreWriter
from dynamodb_replicator.ops.repairer import Repairer
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import FIELDS, REGIONS, create_table

US, EU, AP = REGIONS
TABLE = "LiveRefused"


class _LiveRegion:
    """eu-west-1's writer, its application writing just before and after repair's writes
    there (the interleaving live traffic may take)."""

    def __init__(self, writer: StoreWriter, client: Any) -> None:
        self.writer, self.client = writer, client

    def apply(self, table: str, ops: Sequence[WriteOp]) -> Any:
        # k2 written anew: repair's put of the older k2 comes back stale (a newer version
        # got there first, as the docs say: only counted in stale).
        self.client.put_item(TableName=TABLE, Item=_item("k2", 30, "newer-in-eu"))
        result = self.writer.apply(table, ops)
        # The application deletes the copy of k1 repair just wrote; the replicator has not
        # read that record yet (no tombstone).
        self.client.delete_item(TableName=TABLE, Key={"pk": {"S": "k1"}})
        return result

    def close(self) -> None:
        self.writer.close()


def _item(key: str, stamp: int, value: str) -> dict[str, Any]:
    return {"pk": {"S": key}, FIELDS.timestamp: {"N": str(stamp)}, "v": {"S": value}}


def _repairer(
    table: str,
    clients: dict[str, Any],
    writers: dict[str, Any],
    settings: ReplicationSettings,
    rule: ResidencyRule | None = None,
) -> Repairer:
    """A repair that writes (no dry run), built as the command builds it, with ``rule``."""
    if rule is not None:
        settings = replace(settings, residency=Residency(((table, rule),)))
    return build_repairer(table, clients, writers, settings, dry_run=False)


def test_repair_names_no_key_refused_whose_write_landed(ddb_local: DynamoDBLocal) -> None:
    """ap-southeast-1 holds k1 (10) and k2 (20), its own writes; eu-west-1 never got k1 and
    holds k2 at 5. Repair puts both into eu-west-1: around its writes eu-west-1's
    application writes k2 at 30 (repair's put is stale, rightly) and deletes the k1 repair
    just put (which landed). No write of k1 was refused: repair must not name it."""
    settings = ReplicationSettings()
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (AP, EU)}
    for region, client in clients.items():
        create_table(client, TABLE, region=region)
    clients[AP].put_item(TableName=TABLE, Item=_item("k1", 10, "a"))
    clients[AP].put_item(TableName=TABLE, Item=_item("k2", 20, "b"))
    clients[EU].put_item(TableName=TABLE, Item=_item("k2", 5, "old"))
    writers: dict[str, Any] = {
        r: build_writer(RegionSpec(r, ddb_local.endpoint_url), settings) for r in (AP, EU)
    }
    writers[EU] = _LiveRegion(writers[EU], clients[EU])
    repairer = _repairer(TABLE, clients, writers, settings)
    try:
        repairer([{"pk": {"S": "k1"}}, {"pk": {"S": "k2"}}])
    finally:
        for writer in writers.values():
            writer.close()
    report = repairer.report
    # The state the test is named after: both puts sent to eu-west-1, k2's stale.
    assert report.puts == {EU: 2} and report.stale == {EU: 1}
    assert report.refused == 0, report.as_json()


def _outside_the_scope(
    ddb_local: DynamoDBLocal, table: str, nonce: dict[str, str]
) -> tuple[Repairer, dict[str, Any]]:
    """Country XX lives in ap-southeast-1 and eu-west-1, YY in eu-west-1 only.
    ap-southeast-1 holds a copy of (T, us-east-1) of country XX whose content its
    application updated keeping the marker and ``nonce``: its own content as repair reads
    it. eu-west-1 holds its own write of T, country YY: the winner, whose scope leaves out
    ap-southeast-1, so repair deletes k there; D2's conditions read the copy's labels
    (T, us-east-1), which outrank the delete. Repair has run."""
    rule = ResidencyRule("country", (("XX", frozenset({AP, EU})), ("YY", frozenset({EU}))))
    settings = ReplicationSettings()
    regions = (AP, EU, US)
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in regions}
    for region, client in clients.items():
        create_table(client, table, region=region)
    stamp = {"N": "1700000000000"}
    copy = {
        "pk": {"S": "k"},
        FIELDS.timestamp: stamp,
        "country": {"S": "XX"},
        "v": {"S": "updated"},
        FIELDS.origin: {"S": US},
        FIELDS.marker: stamp,
        FIELDS.origin_seq: {"S": pad_sequence("1")},
        FIELDS.nonce: nonce,
    }
    clients[AP].put_item(TableName=table, Item=copy)
    own = {"pk": {"S": "k"}, FIELDS.timestamp: stamp, "country": {"S": "YY"}, "v": {"S": "eu"}}
    clients[EU].put_item(TableName=table, Item=own)
    writers = {r: build_writer(RegionSpec(r, ddb_local.endpoint_url), settings) for r in regions}
    repairer = _repairer(table, clients, writers, settings, rule)
    try:
        repairer([{"pk": {"S": "k"}}])
    finally:
        for writer in writers.values():
            writer.close()
    return repairer, clients


def test_repair_lands_its_delete_outside_the_winners_scope_over_a_copy_updated_keeping_its_marker(
    ddb_local: DynamoDBLocal,
) -> None:
    """The copy's nonce is the replica write's (sealed for the content it wrote): repair's
    delete supersedes it, relabels the copy as ap-southeast-1's own and removes it."""
    written = {"pk": {"S": "k"}, "country": {"S": "XX"}, "v": {"S": "replicated"}}
    nonce = {"S": seal("n1", {**written, FIELDS.timestamp: {"N": "1700000000000"}}, FIELDS)}
    repairer, clients = _outside_the_scope(ddb_local, "ScopeSuperseded", nonce)
    report = repairer.report
    assert report.deletes == {AP: 1}, report.as_json()  # the delete sent
    held = clients[AP].get_item(
        TableName="ScopeSuperseded", Key={"pk": {"S": "k"}}, ConsistentRead=True
    )
    assert "Item" not in held, held
    assert report.stale.get(AP, 0) == 0 and report.refused == 0, report.as_json()


def test_repair_names_a_key_whose_needed_delete_outside_the_winners_scope_is_refused(
    ddb_local: DynamoDBLocal,
) -> None:
    """The copy's ``__replicaNonce`` is no string (written behind the replicator's back):
    no nonce repair can supersede, so the delete is refused every time (D1 lands). Repair
    must name the key refused."""
    repairer, clients = _outside_the_scope(ddb_local, "ScopeRefused", {"N": "7"})
    report = repairer.report
    # The state the test is named after: the delete sent, refused, the copy still there.
    assert report.deletes == {AP: 1} and report.stale == {AP: 1}, report.as_json()
    held = clients[AP].get_item(
        TableName="ScopeRefused", Key={"pk": {"S": "k"}}, ConsistentRead=True
    )
    assert held.get("Item", {}).get("v") == {"S": "updated"}
    assert report.refused == 1, report.as_json()
