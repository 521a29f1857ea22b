"""Choosing each key's winner among every region's item and remembered delete."""

from __future__ import annotations

import io
from decimal import Decimal

from rich.console import Console

from dynamodb_replicator.cli.repair import print_plan
from dynamodb_replicator.core.model import ItemKey, Tombstone, Version
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LATEST, LastWriterWins
from dynamodb_replicator.ops.repair import RepairReport, resolve

from .strategies import FIELDS, local_item, replica_item

KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
POLICY = LastWriterWins(FIELDS)


def test_newest_item_goes_where_it_is_missing_or_older() -> None:
    newest = replica_item(Version.of("9", "us-east-1"))
    ops = resolve(
        KEY,
        {"us-east-1": local_item("9"), "eu-west-1": newest, "ap-southeast-1": None},
        {},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops is not None and set(ops) == {"ap-southeast-1"}
    op = ops["ap-southeast-1"]
    # us-east-1's own item is the latest content of its version: copied labelled so.
    assert isinstance(op, PutVersion) and op.version == Version.of("9", "us-east-1", LATEST)


def test_a_remembered_delete_of_the_same_version_wins() -> None:
    # eu-west-1 deleted us-east-1's version: every content of it (seq LATEST).
    tomb = Tombstone(KEY, Version.of("9", "us-east-1", LATEST), "eu-west-1")
    ops = resolve(
        KEY,
        {"us-east-1": local_item("9"), "eu-west-1": None},
        {"eu-west-1": tomb},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops == {"us-east-1": DeleteVersion(KEY, tomb.version, "eu-west-1", "0")}


def test_an_item_newer_than_the_delete_survives_it() -> None:
    tomb = Tombstone(KEY, Version.of("5", "us-east-1"), "us-east-1")
    ops = resolve(
        KEY,
        {"us-east-1": None, "eu-west-1": local_item("6")},
        {"us-east-1": tomb},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops is not None and set(ops) == {"us-east-1"}  # eu-west-1 already holds it
    op = ops["us-east-1"]
    assert isinstance(op, PutVersion) and op.version == Version.of("6", "eu-west-1", LATEST)
    assert op.image == local_item("6")


def test_unversioned_items_alone_cannot_be_decided() -> None:
    assert (
        resolve(KEY, {"a1": {"pk": {"S": "k"}}, "b1": None}, {}, policy=POLICY, fields=FIELDS)
        is None
    )


def test_keys_that_agree_when_re_read_are_counted_as_settled_and_not_written() -> None:
    report = RepairReport()
    key = ItemKey.from_attributes({"pk": {"S": "a"}})
    put = PutVersion(key, Version(Decimal(5), "us-east-1"), {"pk": {"S": "a"}}, "1")
    assert report.plan({"pk": {"S": "a"}}, {}) == {}  # agrees now: in flight at the scan
    assert report.plan({"pk": {"S": "b"}}, {"eu-west-1": put}) == {"eu-west-1": put}
    assert report.plan({"pk": {"S": "c"}}, None) == {}  # undecidable
    assert (report.settled, report.puts, report.unresolved) == (1, {"eu-west-1": 1}, 1)
    assert report.as_json()["settled"] == 1
    text = io.StringIO()
    print_plan(Console(file=text, width=200), report, dry_run=True)
    lines = text.getvalue().splitlines()
    assert lines[0] == "  repair would write: puts eu-west-1 1; deletes none"
    assert lines[1] == (
        "  not written: 1 keys that agreed when repair re-read them "
        "(differences that settled: replication in flight)"
    )
