"""Choosing each key's winner among every region's item and remembered delete."""

from __future__ import annotations

import io
from decimal import Decimal

from rich.console import Console

from dynamodb_replicator.cli.repair import print_plan
from dynamodb_replicator.core.model import ItemKey, Tombstone, Version, pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.policy import LATEST, LastWriterWins
from dynamodb_replicator.ops.repair import resolve
from dynamodb_replicator.ops.repairer import RepairReport

from .strategies import FIELDS, local_item, replica_item

KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
POLICY = LastWriterWins(FIELDS)
LOWEST = pad_sequence("0")  # the lowest real seq (ops.repair_labels)


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
    # us-east-1's own item carries no seq and no copy of (9, us-east-1) has a real one: it
    # is copied with the lowest real seq, which us-east-1's later writes of 9 outrank.
    assert isinstance(op, PutVersion) and op.version == Version.of("9", "us-east-1", LOWEST)


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
    assert isinstance(op, PutVersion) and op.version == Version.of("6", "eu-west-1", LOWEST)
    assert op.image == local_item("6")


def test_unversioned_items_alone_cannot_be_decided() -> None:
    assert (
        resolve(KEY, {"a1": {"pk": {"S": "k"}}, "b1": None}, {}, policy=POLICY, fields=FIELDS)
        is None
    )


def test_an_origins_rewrite_of_a_timestamp_it_deleted_is_labelled_above_its_delete() -> None:
    """us-east-1 deleted its own 9 (record 5) and wrote 9 again (the rewrite's record never
    arrived): the rewrite wins over the remembered delete, and its copy lands over it."""
    tomb = Tombstone(KEY, Version.of("9", "us-east-1", pad_sequence("5")), "us-east-1")
    ops = resolve(
        KEY,
        {"us-east-1": local_item("9"), "eu-west-1": None},
        {"us-east-1": tomb, "eu-west-1": tomb},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops is not None and set(ops) == {"eu-west-1"}
    op = ops["eu-west-1"]
    assert isinstance(op, PutVersion) and op.version == Version.of(
        "9", "us-east-1", pad_sequence("6")
    )


def test_an_origins_own_content_is_labelled_above_a_different_copy_of_its_version() -> None:
    """eu-west-1 holds an earlier content of (9, us-east-1) at seq 7; us-east-1's own later
    content must replace it, so it is labelled above 7 (P1 refuses a lower seq)."""
    older = replica_item(Version.of("9", "us-east-1", pad_sequence("7")), extra={"S": "old"})
    ops = resolve(
        KEY, {"us-east-1": local_item("9"), "eu-west-1": older}, {}, policy=POLICY, fields=FIELDS
    )
    assert ops is not None
    op = ops["eu-west-1"]
    assert isinstance(op, PutVersion) and op.version == Version.of(
        "9", "us-east-1", pad_sequence("8")
    )


def test_a_delete_remembered_in_the_region_that_made_it_outranks_the_copies() -> None:
    """ap-southeast-1's application deleted us-east-1's 9: remembered there (and in
    us-east-1, where it looks like residency's removal of a write outside its scope). The
    delete counts, through the tombstone of the region that made it."""
    tomb = Tombstone(KEY, Version.of("9", "us-east-1", LATEST), "ap-southeast-1")
    copy = replica_item(Version.of("9", "us-east-1", pad_sequence("3")))
    ops = resolve(
        KEY,
        {"us-east-1": None, "eu-west-1": copy, "ap-southeast-1": None},
        {"us-east-1": tomb, "eu-west-1": None, "ap-southeast-1": tomb},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops == {"eu-west-1": DeleteVersion(KEY, tomb.version, "ap-southeast-1", "0")}


def test_an_origins_own_delete_counts_although_a_copy_carries_its_seq() -> None:
    """A copy repair labelled just above a known seq (6) may carry the seq of us-east-1's
    later REMOVE record (6, when its stream numbers records one by one): that delete is
    remembered in us-east-1 under its own name and removes the copy, though its version
    equals a held copy's, the shape of residency's stand-ins."""
    version = Version.of("9", "us-east-1", pad_sequence("6"))
    tomb = Tombstone(KEY, version, "us-east-1")
    ops = resolve(
        KEY,
        {"us-east-1": None, "eu-west-1": replica_item(version)},
        {"us-east-1": tomb, "eu-west-1": None},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops == {"eu-west-1": DeleteVersion(KEY, version, "us-east-1", "0")}


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


def test_a_key_held_nowhere_and_remembered_only_by_an_unconfirmed_delete_needs_nothing() -> None:
    # eu-west-1 remembers a delete made in us-east-1, whose own tombstone is not written
    # yet (the delete's record is still in flight there): not ranked, and not undecidable.
    tomb = Tombstone(KEY, Version.of("9", "us-east-1", LATEST), "us-east-1")
    ops = resolve(
        KEY,
        {"us-east-1": None, "eu-west-1": None},
        {"eu-west-1": tomb, "us-east-1": None},
        policy=POLICY,
        fields=FIELDS,
    )
    assert ops == {}


def test_keys_undecided_for_a_region_not_read_name_that_region() -> None:
    report = RepairReport()
    report.plan({"pk": {"S": "a"}}, None, ["ap-southeast-1"])
    report.plan({"pk": {"S": "b"}}, None)
    assert report.unresolved == 2 and report.as_json()["read_with"] == ["ap-southeast-1"]
    text = io.StringIO()
    print_plan(Console(file=text, width=300), report, dry_run=True)
    assert "repair with ap-southeast-1 in --regions decides them" in text.getvalue()
