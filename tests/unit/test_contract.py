"""The contract-violation detector (core.contract): pure, on hand-made changes."""

from __future__ import annotations

from typing import Any

from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome
from dynamodb_replicator.core.contract import ViolationKind, find_violations
from dynamodb_replicator.core.model import (
    Change,
    Item,
    ItemKey,
    Operation,
    SystemAttributes,
    Version,
)

FIELDS = SystemAttributes()
EU, US = "eu-west-1", "us-east-1"
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
MS = "1700000000000"


def item(ts: str, value: str, origin: str | None = None) -> Item:
    found: dict[str, dict[str, Any]] = {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": ts},
        "v": {"S": value},
    }
    if origin:
        found[FIELDS.origin] = {"S": origin}
        found[FIELDS.marker] = {"N": ts}
    return found


def put(new: Item, old: Item | None, *, echo: bool = False, seq: str = "1") -> Change:
    def version(image: Item | None) -> Version | None:
        if image is None:
            return None
        origin = image.get(FIELDS.origin, {}).get("S", EU)
        return Version.of(image[FIELDS.timestamp]["N"], origin)

    return Change(Operation.PUT, KEY, seq, version(new), new, old, version(old), echo)


def kinds(changes: list[Change], lost: tuple[Conflict, ...] = ()) -> list[ViolationKind]:
    return [v.kind for v in find_violations(changes, lost, source=EU, fields=FIELDS)]


def test_an_update_keeping_the_timestamp_of_a_local_write_is_replicated_but_warned() -> None:
    (violation,) = find_violations(
        [put(item(MS, "new"), item(MS, "old"))], (), source=EU, fields=FIELDS
    )
    assert violation.kind is ViolationKind.KEPT_TIMESTAMP
    assert violation.replicated and violation.region == EU and violation.key == KEY
    assert "kept __timestamp 1700000000000" in violation.message
    assert "epoch milliseconds" in violation.message


def test_an_update_keeping_the_timestamp_of_a_replica_is_not_replicated_and_warned() -> None:
    # The replica's __originRegion and marker stay: the update looks like an echo.
    change = put(item(MS, "new", origin=US), item(MS, "old", origin=US), echo=True)
    (violation,) = find_violations([change], (), source=EU, fields=FIELDS)
    assert violation.kind is ViolationKind.KEPT_TIMESTAMP and not violation.replicated
    assert "not replicated" in violation.message


def test_no_warning_for_good_writes() -> None:
    assert kinds([put(item("1700000000001", "new"), item(MS, "old"))]) == []
    assert kinds([put(item(MS, "same"), item(MS, "same"))]) == []  # rewritten unchanged
    assert kinds([put(item(MS, "v"), None)]) == []
    assert kinds([put(item("5", "v"), None)]) == []  # small counters alone are consistent
    assert kinds([put(item("5", "v"), item("4", "v"))]) == []
    # A replica write (echo) of a newer version is the replicator's, not the application's.
    assert kinds([put(item("1700000000001", "r", US), item(MS, "o"), echo=True)]) == []


def test_a_timestamp_in_seconds_among_milliseconds_is_warned() -> None:
    (violation,) = find_violations(
        [put(item("1700000001", "new"), item(MS, "old"))], (), source=EU, fields=FIELDS
    )
    assert violation.kind is ViolationKind.SECONDS_TIMESTAMP
    assert violation.timestamp == "1700000001" and violation.other == MS
    assert "looks like seconds" in violation.message
    # No version replaced, but another write of the batch is in milliseconds.
    other = Change(
        Operation.PUT,
        ItemKey.from_attributes({"pk": {"S": "o"}}),
        "2",
        Version.of(MS, EU),
        item(MS, "x"),
    )
    assert kinds([put(item("1700000001", "new"), None), other]) == [ViolationKind.SECONDS_TIMESTAMP]


def test_a_local_write_reverted_in_its_own_region_is_warned() -> None:
    lost = Conflict(
        ConflictOutcome.LOST,
        KEY,
        EU,
        "put",
        Version.of("1699999999999", EU),
        Version.of(MS, US),
        "7",
    )
    (violation,) = find_violations([], (lost,), source=EU, fields=FIELDS)
    assert violation.kind is ViolationKind.REVERTED and violation.region == EU
    assert violation.sequence_number == "7" and not violation.replicated
    assert "reverted in its own region" in violation.message
