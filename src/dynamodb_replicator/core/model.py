"""Values that flow through the replicator.

Items are kept as raw low-level AttributeValue maps (the boto3 client form: ``N`` as a
string, ``B`` as bytes) from the stream to the target write, so a 38-digit Number or a
Binary key is never rounded or re-encoded on the way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from dynamodb_replicator.core.defaults import tombstone_table
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.roles import RoleSpec

__all__ = [
    "AttributeValue",
    "Change",
    "Item",
    "ItemKey",
    "Operation",
    "RegionSpec",
    "SystemAttributes",
    "TableNames",
    "Tombstone",
    "Version",
    "pad_sequence",
    "parse_number",
]

SEQUENCE_WIDTH = 40
"""Stream sequence numbers are 21-40 digits: zero-padded to this width, string order is
numeric order (DynamoDB compares String attributes by bytes)."""


def pad_sequence(sequence: str) -> str:
    """A stream SequenceNumber as the fixed-width text stored in ``__originSeq``."""
    return sequence.zfill(SEQUENCE_WIDTH)


AttributeValue = dict[str, Any]
Item = Mapping[str, AttributeValue]


def parse_number(raw: str) -> Decimal | None:
    """Parse a DynamoDB Number exactly (no context rounding); None when it is not a number."""
    try:
        value = Decimal(raw)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True, slots=True)
class SystemAttributes:
    """Names of the attributes the replicator reads or adds. All added ones start with ``__``."""

    timestamp: str = "__timestamp"
    origin: str = "__originRegion"
    marker: str = "__replicaTimestamp"
    # Fresh for every replica write: a stream record whose NewImage nonce differs from its
    # OldImage's is the replicator's own write; an application update keeps the nonce.
    nonce: str = "__replicaNonce"
    # The origin record's stream sequence number (padded): orders two contents of a version.
    origin_seq: str = "__originSeq"
    deleted_in: str = "__deletedIn"
    expires_at: str = "__expiresAt"

    def added(self) -> frozenset[str]:
        """Attributes the replicator adds to items (never the application's ``__timestamp``)."""
        return frozenset({self.origin, self.marker, self.nonce, self.origin_seq})


@dataclass(frozen=True, slots=True)
class ItemKey:
    """The primary key of an item, hashable, in a canonical attribute order."""

    parts: tuple[tuple[str, str, str | bytes], ...]
    # ``str(self)``, once asked: a writer orders every page's keys by it, and one key goes
    # to every target region's writer.
    _text: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def from_attributes(cls, keys: Mapping[str, AttributeValue]) -> ItemKey:
        parts: list[tuple[str, str, str | bytes]] = []
        for name in sorted(keys):
            ((kind, value),) = keys[name].items()
            parts.append((name, kind, value))
        return cls(tuple(parts))

    def to_attributes(self) -> dict[str, AttributeValue]:
        return {name: {kind: value} for name, kind, value in self.parts}

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.parts)

    def __str__(self) -> str:
        """The one key text (``codec.key_to_json``), wherever a key is printed."""
        # codec imports this module: the one encoding is imported where it is used.
        text = self._text
        if text is None:
            from dynamodb_replicator.core.codec import key_to_json  # noqa: PLC0415

            text = key_to_json(self.to_attributes())
            object.__setattr__(self, "_text", text)  # the same text, whoever sets it
        return text


@dataclass(frozen=True, slots=True)
class Version:
    """A version of an item: its ``__timestamp``, the region where it was first written and
    the sequence number of that write's record in the origin's stream (padded, see
    ``pad_sequence``; "" when unknown: an item of the earlier scheme, lowest). ``seq`` is
    the last tiebreak: it only orders two writes of one timestamp in one region."""

    timestamp: Decimal
    origin: str
    raw_timestamp: str = field(compare=False, default="")
    seq: str = ""

    @classmethod
    def of(cls, raw_timestamp: str, origin: str, seq: str = "") -> Version:
        value = parse_number(raw_timestamp)
        if value is None:
            raise ValueError(f"not a DynamoDB Number: {raw_timestamp!r}")
        return cls(value, origin, raw_timestamp, seq)

    def __str__(self) -> str:
        return f"{self.raw_timestamp or self.timestamp}@{self.origin}"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The memory of a delete in one region: the deleted version and where the delete came from."""

    key: ItemKey
    version: Version
    deleted_in: str


class Operation(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One decoded stream record of a source region.

    ``version`` is the version the change carries: the new version for a put, the deleted
    version for a delete (None: the deleted item had no ``__timestamp``). ``old_version``
    is the version a put replaced (None when absent); for a delete, the labels of the
    content removed (``version`` may name every content of its timestamp and origin).
    ``echo`` marks a change made by the replicator itself.
    """

    operation: Operation
    key: ItemKey
    sequence_number: str
    version: Version | None
    image: Item | None = None
    old_image: Item | None = None
    old_version: Version | None = None
    echo: bool = False

    @property
    def sequence(self) -> int:
        return int(self.sequence_number)


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """A region name and, for DynamoDB Local or a proxy, the endpoint to use instead of AWS.
    ``role``: the role every call into the region assumes (its tables are in another
    account); None: the process's own credentials."""

    name: str
    endpoint_url: str | None = None
    role: RoleSpec | None = None


@dataclass(frozen=True, slots=True)
class TableNames:
    """Where each replicated table is in each region: its physical name, per region.

    The logical name (the config's ``tables``) is a table's identity everywhere: state
    table keys, leases, checkpoints, reports, metrics, conflict logs. Only the requests to
    DynamoDB use physical names, translated here: ``physical(table, region)`` is the
    logical name unless ``renamed`` says otherwise. A table's tombstone table is its
    physical name plus the tombstone suffix.
    """

    renamed: tuple[tuple[str, str, str], ...] = ()  # (logical, region, physical), sorted

    def __post_init__(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for logical, region, physical in self.renamed:
            if seen.setdefault((region, physical), logical) != logical:
                raise ConfigError(
                    f"tables {seen[(region, physical)]} and {logical} are both {physical} "
                    f"in {region}"
                )
        if len({(logical, region) for logical, region, _ in self.renamed}) != len(seen):
            raise ConfigError("a table is given two physical names in one region")

    @classmethod
    def of(cls, mapping: Mapping[str, Mapping[str, str]]) -> TableNames:
        """From logical name -> region -> physical name (entries equal to the logical name
        are dropped: that is the default)."""
        return cls(
            tuple(
                sorted(
                    (logical, region, physical)
                    for logical, regions in mapping.items()
                    for region, physical in regions.items()
                    if physical != logical
                )
            )
        )

    def physical(self, table: str, region: str) -> str:
        """The name of logical ``table`` in ``region``."""
        for logical, where, physical in self.renamed:
            if logical == table and where == region:
                return physical
        return table

    def logical(self, physical: str, region: str) -> str:
        """The logical table whose name in ``region`` is ``physical`` (a stream record's
        table); ConfigError when that table is not the replicated one there."""
        for logical, where, name in self.renamed:
            if name == physical and where == region:
                return logical
        for logical, where, name in self.renamed:
            if logical == physical and where == region:
                raise ConfigError(
                    f"table {physical} in {region} is not replicated: the table replicated "
                    f"as {physical} is {name} there"
                )
        return physical

    def tombstones(self, table: str, region: str, suffix: str) -> str:
        """The name of logical ``table``'s tombstone table in ``region``."""
        return tombstone_table(self.physical(table, region), suffix)

    def in_region(self, region: str, suffix: str) -> dict[str, str]:
        """Logical name -> physical name in ``region`` of the renamed tables and of their
        tombstone tables (logical name + suffix, as the core names them)."""
        found: dict[str, str] = {}
        for logical, where, physical in self.renamed:
            if where == region:
                found[logical] = physical
                found[tombstone_table(logical, suffix)] = tombstone_table(physical, suffix)
        return found

    def check(self, tables: Sequence[str]) -> None:
        """ConfigError when a renamed table is not in ``tables``, or takes the name another
        of ``tables`` has in the same region."""
        for logical, region, physical in self.renamed:
            if logical not in tables:
                raise ConfigError(f"table_names.{logical}: {logical} is not in tables")
            if physical in tables and self.physical(physical, region) == physical:
                raise ConfigError(
                    f"tables {physical} and {logical} are both {physical} in {region}"
                )
