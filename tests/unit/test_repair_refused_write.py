"""Which re-read decision counts a refused repair write as still needed: the same kind of
write of the same timestamp and origin (a put: of the same content), whatever seq labels
it (``ops.repairer._same_write``). The re-read may label the same write otherwise: a
delete's D1 lands when its D2 is refused, and a tombstone whose reading as a stand-in
depends on a region not read is ranked above it."""

from __future__ import annotations

from dynamodb_replicator.core.model import Item, ItemKey, Version, pad_sequence
from dynamodb_replicator.core.plan import DeleteVersion, PutVersion
from dynamodb_replicator.core.streams import NO_SEQUENCE
from dynamodb_replicator.ops.repairer import _same_write

from .strategies import FIELDS

KEY = ItemKey.from_attributes({"pk": {"S": "k"}})
EU, US = "eu-west-1", "us-east-1"


def _version(stamp: str = "5", origin: str = EU, seq: str = "0") -> Version:
    return Version.of(stamp, origin, pad_sequence(seq))


def _put(version: Version, value: str = "x") -> PutVersion:
    image: Item = {"pk": {"S": "k"}, FIELDS.timestamp: {"N": version.raw_timestamp}}
    return PutVersion(KEY, version, {**image, "v": {"S": value}}, NO_SEQUENCE)


def _delete(version: Version, deleted_in: str = EU) -> DeleteVersion:
    return DeleteVersion(KEY, version, deleted_in, NO_SEQUENCE)


def test_a_delete_relabelled_above_its_own_tombstone_is_the_same_write() -> None:
    sent = _delete(_version(seq="0"))
    assert _same_write(_delete(_version(seq="1")), sent, FIELDS)
    assert _same_write(_delete(_version(seq="0"), deleted_in=US), sent, FIELDS)


def test_a_put_of_the_same_content_relabelled_is_the_same_write() -> None:
    assert _same_write(_put(_version(seq="3")), _put(_version(seq="0")), FIELDS)


def test_another_content_timestamp_origin_or_kind_is_another_write() -> None:
    sent_put, sent_delete = _put(_version()), _delete(_version())
    assert not _same_write(_put(_version(), value="y"), sent_put, FIELDS)
    assert not _same_write(_put(_version(stamp="6")), sent_put, FIELDS)
    assert not _same_write(_put(_version(origin=US)), sent_put, FIELDS)
    assert not _same_write(_delete(_version(stamp="6")), sent_delete, FIELDS)
    assert not _same_write(_delete(_version(origin=US)), sent_delete, FIELDS)
    assert not _same_write(_delete(_version()), sent_put, FIELDS)
    assert not _same_write(_put(_version()), sent_delete, FIELDS)
    assert not _same_write(None, sent_put, FIELDS)
