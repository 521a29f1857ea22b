"""Hypothesis strategies shared by the unit tests."""

from __future__ import annotations

from hypothesis import strategies as st

from dynamodb_replicator.core.model import (
    AttributeValue,
    SystemAttributes,
    Version,
    pad_sequence,
)

FIELDS = SystemAttributes()
REGIONS = ("ap-southeast-1", "eu-west-1", "us-east-1", "us-west-2")

regions = st.sampled_from(REGIONS)
timestamps = st.integers(min_value=0, max_value=6).map(str)
# Two contents of one version differ by the origin record's sequence number ("" for items
# of the earlier scheme, the lowest).
seqs = st.sampled_from(["", pad_sequence("7"), pad_sequence("12")])


@st.composite
def versions(draw: st.DrawFn) -> Version:
    return Version.of(draw(timestamps), draw(regions), draw(seqs))


def replica_item(
    version: Version, *, extra: AttributeValue | None = None
) -> dict[str, AttributeValue]:
    """An item as the writer stores a replica write of ``version``."""
    item: dict[str, AttributeValue] = {
        "pk": {"S": "k"},
        FIELDS.timestamp: {"N": version.raw_timestamp},
        FIELDS.origin: {"S": version.origin},
        FIELDS.marker: {"N": version.raw_timestamp},
        FIELDS.nonce: {"S": "n1"},
    }
    if version.seq:
        item[FIELDS.origin_seq] = {"S": version.seq}
    if extra:
        item["v"] = extra
    return item


def local_item(timestamp: str) -> dict[str, AttributeValue]:
    """An item as an application writes it (no replica marker)."""
    return {"pk": {"S": "k"}, FIELDS.timestamp: {"N": timestamp}}


@st.composite
def stored_items(draw: st.DrawFn) -> dict[str, AttributeValue] | None:
    """Any state a stored item can be in: absent, unversioned, local, replica, stale marker."""
    kind = draw(
        st.sampled_from(
            ["absent", "unversioned", "string-ts", "local", "replica", "updated", "legacy"]
        )
    )
    if kind == "absent":
        return None
    if kind == "unversioned":
        return {"pk": {"S": "k"}}
    if kind == "string-ts":
        return {"pk": {"S": "k"}, FIELDS.timestamp: {"S": "5"}}
    if kind == "local":
        return local_item(draw(timestamps))
    item = replica_item(draw(versions()))
    if kind == "legacy":  # written by the earlier scheme: no nonce, no seq
        item.pop(FIELDS.nonce)
        item.pop(FIELDS.origin_seq, None)
    if kind == "updated":  # an application updated a replicated item: new timestamp, old marker
        item[FIELDS.timestamp] = {"N": draw(timestamps)}
    return item
