"""Values that flow through the replicator.

Items are kept as raw low-level AttributeValue maps (the boto3 client form: ``N`` as a
string, ``B`` as bytes) from the stream to the target write, so a 38-digit Number or a
Binary key is never rounded or re-encoded on the way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from dynamodb_replicator.core.roles import RoleSpec

__all__ = [
    "AttributeValue",
    "Change",
    "Item",
    "ItemKey",
    "Operation",
    "RegionSpec",
    "SystemAttributes",
    "Tombstone",
    "Version",
    "parse_number",
]

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
    deleted_in: str = "__deletedIn"
    expires_at: str = "__expiresAt"

    def added(self) -> frozenset[str]:
        """Attributes the replicator adds to items (never the application's ``__timestamp``)."""
        return frozenset({self.origin, self.marker})


@dataclass(frozen=True, slots=True)
class ItemKey:
    """The primary key of an item, hashable, in a canonical attribute order."""

    parts: tuple[tuple[str, str, str | bytes], ...]

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
        rendered = []
        for name, kind, value in self.parts:
            shown = value.hex() if isinstance(value, bytes) else value
            rendered.append(f"{name}={kind}:{shown}")
        return ",".join(rendered)


@dataclass(frozen=True, slots=True)
class Version:
    """A version of an item: its ``__timestamp`` and the region where it was first written."""

    timestamp: Decimal
    origin: str
    raw_timestamp: str = field(compare=False, default="")

    @classmethod
    def of(cls, raw_timestamp: str, origin: str) -> Version:
        value = parse_number(raw_timestamp)
        if value is None:
            raise ValueError(f"not a DynamoDB Number: {raw_timestamp!r}")
        return cls(value, origin, raw_timestamp)

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
    is the version a put replaced (None when absent).
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
