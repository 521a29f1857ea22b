"""Planning: echoes dropped, regressions restored, deletes remembered everywhere."""

from __future__ import annotations

from dynamodb_replicator.core.conflicts import ConflictOutcome
from dynamodb_replicator.core.content import digest
from dynamodb_replicator.core.model import (
    Change,
    Item,
    ItemKey,
    Operation,
    SystemAttributes,
    Tombstone,
    Version,
    pad_sequence,
)
from dynamodb_replicator.core.plan import (
    DeleteUnversioned,
    DeleteVersion,
    Plan,
    PutVersion,
    plan_changes,
)
from dynamodb_replicator.core.policy import LastWriterWins

from .strategies import FIELDS

REGIONS = ["ap-southeast-1", "eu-west-1", "us-east-1"]
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
SOURCE = "eu-west-1"


def plan(*changes: Change, tombs: dict[ItemKey, Tombstone] | None = None) -> Plan:
    return plan_changes(
        changes,
        source=SOURCE,
        regions=REGIONS,
        policy=LastWriterWins(FIELDS),
        fields=FIELDS,
        tombstones=tombs or {},
    )


def image(ts: str, **extra: dict[str, str]) -> dict[str, dict[str, str]]:
    return {"pk": {"S": "k"}, FIELDS.timestamp: {"N": ts}, **extra}


def put(ts: str, seq: str = "1", old: str | None = None, echo: bool = False) -> Change:
    old_image = image(old) if old else None
    return Change(
        Operation.PUT,
        KEY,
        seq,
        Version.of(ts, SOURCE),
        image=image(ts),
        old_image=old_image,
        old_version=Version.of(old, SOURCE) if old else None,
        echo=echo,
    )


def test_application_write_goes_to_every_other_region() -> None:
    result = plan(put("5", old="4"))
    assert result.writes[SOURCE] == []
    for region in ("ap-southeast-1", "us-east-1"):
        assert result.writes[region] == [
            PutVersion(
                KEY, Version.of("5", SOURCE), image("5"), "1", replaces=Version.of("4", SOURCE)
            )
        ]
    assert plan(put("5")).writes["us-east-1"][0] == PutVersion(
        KEY, Version.of("5", SOURCE), image("5"), "1"
    )


def test_echo_is_dropped() -> None:
    result = plan(put("5", echo=True))
    assert result.echoes == 1
    assert all(ops == [] for ops in result.writes.values())


def test_regressing_write_restores_the_winner_everywhere() -> None:
    result = plan(put("3", old="9"))
    # Own content is restored as the source's version at the regressing record's place.
    winner = Version.of("9", SOURCE, pad_sequence("1"))
    restore = PutVersion(
        KEY, winner, image("9"), "1", replaces=Version.of("3", SOURCE), strict=True
    )
    assert all(ops == [restore] for ops in result.writes.values())
    (lost,) = result.lost_locally
    assert lost.outcome is ConflictOutcome.LOST and lost.region == SOURCE
    assert (lost.change, lost.other, lost.other_deleted) == (
        Version.of("3", SOURCE),
        Version.of("9", SOURCE),
        False,
    )


def test_insert_older_than_a_remembered_delete_is_deleted_locally() -> None:
    tomb = Tombstone(KEY, Version.of("7", "us-east-1"), "us-east-1")
    result = plan(put("6"), tombs={KEY: tomb})
    assert result.writes[SOURCE] == [DeleteVersion(KEY, tomb.version, "us-east-1", "1")]
    assert result.writes["us-east-1"] == [] and result.writes["ap-southeast-1"] == []
    (lost,) = result.lost_locally
    assert (lost.change, lost.other, lost.other_deleted) == (
        Version.of("6", SOURCE),
        tomb.version,
        True,
    )


def test_insert_newer_than_the_remembered_delete_replicates() -> None:
    tomb = Tombstone(KEY, Version.of("7", "us-east-1"), "us-east-1")
    result = plan(put("8"), tombs={KEY: tomb})
    assert len(result.writes["us-east-1"]) == 1 and result.writes[SOURCE] == []


def test_delete_goes_everywhere_including_the_source() -> None:
    deleted = Change(Operation.DELETE, KEY, "4", Version.of("5", "us-east-1"), old_image=image("5"))
    result = plan(deleted)
    op = DeleteVersion(KEY, Version.of("5", "us-east-1"), SOURCE, "4")
    assert all(ops == [op] for ops in result.writes.values())


def test_delete_echo_of_another_regions_delete_is_dropped() -> None:
    tomb = Tombstone(KEY, Version.of("5", "us-east-1"), "us-east-1")
    deleted = Change(Operation.DELETE, KEY, "4", Version.of("5", "us-east-1"), old_image=image("5"))
    assert plan(deleted, tombs={KEY: tomb}).echoes == 1


def test_own_delete_is_replicated_again_on_replay() -> None:
    tomb = Tombstone(KEY, Version.of("5", "us-east-1"), SOURCE)
    deleted = Change(Operation.DELETE, KEY, "4", Version.of("5", "us-east-1"), old_image=image("5"))
    assert plan(deleted, tombs={KEY: tomb}).echoes == 0


def test_per_key_order_is_kept() -> None:
    result = plan(put("5", "1"), put("6", "2", old="5"), put("7", "3", old="6"))
    assert [op.sequence_number for op in result.writes["us-east-1"]] == ["1", "2", "3"]


def test_a_regressing_update_that_kept_the_replica_marker_is_no_echo() -> None:
    """Region c held a replica of (3, a) with marker 3; its application updated it to 5
    (the marker stays 3), then a writer with a slow clock to 3 (the marker still 3). The
    last record looks like a replica write of (3, a) but it replaced (5, c): it is an
    application write that lost, and (5, c) is restored everywhere."""
    replica = {"pk": {"S": "k"}, FIELDS.origin: {"S": "us-east-1"}, FIELDS.marker: {"N": "3"}}
    updated = {**replica, FIELDS.timestamp: {"N": "5"}}
    regressed = {**replica, FIELDS.timestamp: {"N": "3"}}
    change = Change(
        Operation.PUT,
        KEY,
        "9",
        Version.of("3", "us-east-1"),
        image=regressed,
        old_image=updated,
        old_version=Version.of("5", SOURCE),
        echo=True,
    )
    result = plan(change)
    assert result.echoes == 0
    for ops in result.writes.values():
        assert [(op.version, op.strict) for op in ops if isinstance(op, PutVersion)] == [
            (Version.of("5", SOURCE, pad_sequence("9")), True)
        ]
        assert len(ops) == 1


def test_a_delete_of_an_unversioned_item_goes_to_the_other_regions() -> None:
    change = Change(Operation.DELETE, KEY, "4", None, old_image={"pk": {"S": "k"}})
    result = plan(change)
    assert result.writes[SOURCE] == []
    for region in ("ap-southeast-1", "us-east-1"):
        assert result.writes[region] == [DeleteUnversioned(KEY, "4")]


def test_a_puts_content_digest_is_the_digest_of_its_image_under_each_field_names() -> None:
    """The digest a put's seal carries is computed once per op for every target region,
    and kept apart per SystemAttributes (they decide which attributes it skips)."""
    other = SystemAttributes(origin="__from")
    image: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5"}, "__from": {"S": "x"}}
    key = ItemKey.from_attributes({"pk": {"S": "k"}})
    op = PutVersion(key, Version.of("5", "us-east-1"), image, "1")
    assert op.digest(FIELDS) == digest(image, FIELDS)
    assert op.digest(other) == digest(image, other) != op.digest(FIELDS)
    assert op.digest(FIELDS) == digest(image, FIELDS)  # the kept one
    twin = PutVersion(key, Version.of("5", "us-east-1"), image, "1")
    assert op == twin  # the kept digests are not compared
