"""Hypothesis strategies shared by the unit tests."""

from __future__ import annotations

from hypothesis import strategies as st

from dynamodb_replicator.core.model import (
    AttributeValue,
    SystemAttributes,
    Version,
    pad_sequence,
)
from dynamodb_replicator.core.policy import seal

FIELDS = SystemAttributes()
REGIONS = ("ap-southeast-1", "eu-west-1", "us-east-1", "us-west-2")

regions = st.sampled_from(REGIONS)

# Where versions are compared, timestamps come from the whole space applications write:
# small numbers (ties are frequent), 10-digit epoch seconds, 13-digit epoch milliseconds,
# 38 significant digits, decimals and negatives. Each window is narrow, so equal and
# neighbouring values meet; each value is then spelled one of the ways DynamoDB accepts
# (5, 5.0, 5E0, 0.5E1, 50E-1): a comparison of spellings instead of numbers gets caught.
_EPOCH_S, _EPOCH_MS = 1_733_097_600, 1_733_097_600_123
_WIDE = 12345678901234567890123456789012345678  # 38 significant digits
_integers = st.one_of(
    st.integers(0, 12),
    st.integers(-12, 12),
    st.integers(_EPOCH_S - 3, _EPOCH_S + 3),
    st.integers(_EPOCH_MS - 3, _EPOCH_MS + 3),
    st.integers(_EPOCH_MS * 10 - 3, _EPOCH_MS * 10 + 3),  # 14 digits: "longer is larger"
    st.integers(_WIDE - 3, _WIDE + 3),
    st.integers(-_WIDE - 3, -_WIDE + 3),
)


@st.composite
def numbers(draw: st.DrawFn) -> tuple[int, int]:
    """A number as (digits, scale): its value is digits * 10**-scale."""
    digits = draw(_integers)
    scale = draw(st.sampled_from([0, 0, 0, 1, 3])) if abs(digits) < 10**37 else 0
    return digits, scale


@st.composite
def spellings(draw: st.DrawFn, number: tuple[int, int]) -> str:
    """One of the ways to write ``number`` as a DynamoDB Number, all of the same value."""
    digits, scale = number
    sign, text = ("-" if digits < 0 else ""), str(abs(digits))
    ways = ["plain", "plain", "exponent", "shifted"] + (["zeros"] if len(text) < 37 else [])
    how = draw(st.sampled_from(ways))  # trailing zeros would go past 38 digits
    if how == "zeros":  # 5 -> 5.00, 0.5 -> 0.500
        scale, text = scale + 2, text + "00"
    if how == "exponent":  # 5 -> 5E0, 1000 -> 1000E0, 0.5 -> 5E-1
        return f"{sign}{text}E{-scale}"
    if how == "shifted":  # 5 -> 5E0, 1234 -> 1.234E3, 0.25 -> 2.5E-1
        mantissa = text if len(text) == 1 else f"{text[0]}.{text[1:]}"
        return f"{sign}{mantissa}E{len(text) - 1 - scale}"
    if scale == 0:
        return f"{sign}{text}"
    text = text.rjust(scale + 1, "0")
    return f"{sign}{text[:-scale]}.{text[-scale:]}"


timestamps = numbers().flatmap(spellings)
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
    }
    if version.seq:
        item[FIELDS.origin_seq] = {"S": version.seq}
    if extra:
        item["v"] = extra
    item[FIELDS.nonce] = {"S": seal("n1", item, FIELDS)}  # sealed, as the writer does
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
