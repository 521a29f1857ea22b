"""D2s, the delete that supersedes a nonce (``core.writes``; repair's only): where D2 finds
the stored item newer and that item still carries the nonce of the replica write its
application updated keeping the marker, and, read as this region's own content, is not
newer than the delete, it is relabelled as this region's own and removed. Nothing else is
touched: an item carrying another nonce, or newer as this region's own, stays."""

from __future__ import annotations

from dynamodb_replicator.core.model import Item, ItemKey, Version, pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion
from dynamodb_replicator.core.policy import LATEST, LastWriterWins, is_genuine, seal, stored_version
from dynamodb_replicator.core.writes import Outcome, WriteProtocol
from dynamodb_replicator.testing.clock import ManualClock
from dynamodb_replicator.testing.memory_store import MemoryStore

from .strategies import FIELDS

TABLE = "T"
KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
AP, EU, US = "ap-southeast-1", "eu-west-1", "us-east-1"
NONCE = seal("n1", {"pk": {"S": "k"}, FIELDS.timestamp: {"N": "5"}, "v": {"S": "replica"}}, FIELDS)
# eu-west-1's delete of T=5, below us-east-1's labels the copy in ap-southeast-1 kept.
DELETE = DeleteVersion(KEY, Version.of("5", EU, pad_sequence("9")), EU, "0", supersedes=NONCE)


def _copy(stamp: str, value: str, nonce: str = NONCE) -> Item:
    """ap-southeast-1's copy of (5, us-east-1) as its application left it."""
    return {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": stamp},
        "v": {"S": value},
        FIELDS.origin: {"S": US},
        FIELDS.marker: {"N": "5"},
        FIELDS.origin_seq: {"S": pad_sequence("1")},
        FIELDS.nonce: {"S": nonce},
    }


def _delete(held: Item, *, between: Item | None = None) -> tuple[MemoryStore, Outcome]:
    """The delete in ap-southeast-1 holding ``held``; ``between``: what the application
    writes there just before the relabel (after D2 was refused)."""
    store = MemoryStore(AP, streams=True)
    store.write_directly(TABLE, KEY, held)

    def slip(_store: MemoryStore, call: str) -> None:
        if between is not None and call == f"put {TABLE}":
            store.write_directly(TABLE, KEY, between)

    store.before_call = slip
    protocol = WriteProtocol(
        store, LastWriterWins(FIELDS), FIELDS, ManualClock(100.0), ".__tombstones", 60
    )
    return store, protocol.delete(TABLE, DELETE).outcome


def test_a_disguised_copy_is_relabelled_as_the_regions_own_then_removed() -> None:
    store, outcome = _delete(_copy("5", "updated"))
    assert outcome is Outcome.APPLIED and store.item(TABLE, KEY) is None
    relabel = next(r for r in store.stream if r["eventName"] == "MODIFY")["dynamodb"]["NewImage"]
    assert relabel["v"] == {"S": "updated"} and is_genuine(relabel, FIELDS)
    assert stored_version(relabel, AP, FIELDS) == Version.of("5", AP, LATEST)


def test_a_write_back_of_the_replica_is_relabelled_then_removed() -> None:
    """The write-back (genuine again) is replaced by the content D2 found, relabelled: the
    REMOVE that follows is of ap-southeast-1's own version, not us-east-1's."""
    store, outcome = _delete(_copy("5", "updated"), between=_copy("5", "replica"))
    assert outcome is Outcome.APPLIED and store.item(TABLE, KEY) is None
    removed = store.stream[-1]["dynamodb"]["OldImage"]
    assert stored_version(removed, AP, FIELDS) == Version.of("5", AP, LATEST)


def test_an_item_carrying_another_nonce_stays() -> None:
    """A replica write landed after D2 (a fresh nonce): no longer the application's."""
    landed = _copy("5", "replica", nonce=seal("n2", {"v": {"S": "replica"}}, FIELDS))
    store, outcome = _delete(_copy("5", "updated"), between=landed)
    assert outcome is Outcome.STALE and store.item(TABLE, KEY) == landed


def test_an_item_newer_as_the_regions_own_stays() -> None:
    """The application's update to T=6 kept the nonce (and the old marker): its own write
    of 6 outranks the delete of 5."""
    newer = _copy("6", "later")
    store, outcome = _delete(_copy("5", "updated"), between=newer)
    assert outcome is Outcome.STALE and store.item(TABLE, KEY) == newer
