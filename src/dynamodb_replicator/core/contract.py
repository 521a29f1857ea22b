"""Contract violations: application writes that break the data contract
(docs/concepts/data-contract.md). Pure: fed with a batch's decoded changes and the planner's
lost-locally conflicts; the shell warns about each (key, region, what to fix) and counts them.

Three kinds:

* ``kept-timestamp``: an application update changed user attributes but kept
  ``__timestamp`` and the region of the version it replaced (an update of content written
  in the same region). It is replicated (the later write of one timestamp in one region's
  stream wins), but two writers that both keep the timestamp are ordered by the stream, not
  by their clocks. Reported once, for the record of the region whose application wrote:
  replica writes (echoes) are never checked. Two honest writes stamped in one millisecond
  look the same; an update that kept or hit the timestamp of *another* region's version is
  decided by region name like any equal timestamps and, when it loses, reported as
  ``reverted``. Items of the earlier scheme (no nonce) are the one exception: an update
  keeping their marker is still taken for an echo and not replicated (``replicated``
  False).
* ``seconds-timestamp``: a ``__timestamp`` below 1e11 (seconds since the epoch, or a
  small counter) where the version it replaced, or another write of the batch, is in
  milliseconds: the write loses to older ones.
* ``reverted``: a local write the replicator reverted in its own region because the
  version there was newer (a clock behind, or a timestamp in seconds).
* ``outside-scope``: a write made in a region its residency rule does not allow
  (``core.scoping``): replicated to its scope, then deleted where it was written.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from dynamodb_replicator.core.conflicts import Conflict, ConflictOutcome
from dynamodb_replicator.core.model import Change, Item, ItemKey, Operation, SystemAttributes

__all__ = ["MILLISECONDS_FROM", "Violation", "ViolationKind", "find_violations"]

MILLISECONDS_FROM = Decimal(10**11)
"""A ``__timestamp`` at least this is taken for milliseconds (1e11 ms is March 1973; 1e11 s
is the year 5138)."""

FIX_TIMESTAMP = "set __timestamp to the current time in epoch milliseconds on every write"


class ViolationKind(enum.Enum):
    KEPT_TIMESTAMP = "kept-timestamp"
    SECONDS_TIMESTAMP = "seconds-timestamp"
    REVERTED = "reverted"
    OUTSIDE_SCOPE = "outside-scope"


@dataclass(frozen=True, slots=True)
class Violation:
    """One write that breaks the contract: ``region`` is where it was written."""

    kind: ViolationKind
    key: ItemKey
    region: str
    sequence_number: str
    timestamp: str  # the write's __timestamp as written
    other: str | None = None  # the version it replaced or lost to, when there is one
    replicated: bool = True  # False: the write did not reach the other regions

    @property
    def message(self) -> str:
        """What happened and what to fix, one line."""
        if self.kind is ViolationKind.KEPT_TIMESTAMP:
            what = (
                "not replicated: the item was written by an earlier version of the "
                "replicator and the update looks like its write"
                if not self.replicated
                else "replicated, ordered only by this region's stream, not by a clock"
            )
            return (
                f"an update changed attributes but kept __timestamp {self.timestamp}: "
                f"{what}; {FIX_TIMESTAMP}"
            )
        if self.kind is ViolationKind.SECONDS_TIMESTAMP:
            return (
                f"__timestamp {self.timestamp} looks like seconds (the version it replaced "
                f"or another write has {self.other}, milliseconds): it loses to older writes; "
                f"{FIX_TIMESTAMP}"
            )
        if self.kind is ViolationKind.OUTSIDE_SCOPE:
            return (
                f"a write (__timestamp {self.timestamp}) was made outside its residency scope "
                f"({self.other}): replicated to its scope and deleted here; write it in a "
                "region of its scope"
            )
        return (
            f"a local write (__timestamp {self.timestamp}) was reverted in its own region: "
            f"the region held a newer version ({self.other}); is the writer's clock behind, "
            f"or its timestamp in seconds? {FIX_TIMESTAMP}"
        )


def _user(item: Item | None, fields: SystemAttributes) -> dict[str, object]:
    skip = fields.added() | {fields.timestamp}
    return {k: v for k, v in (item or {}).items() if k not in skip}


def _kept_timestamp(change: Change, source: str, fields: SystemAttributes) -> Violation | None:
    if change.operation is not Operation.PUT or change.old_image is None:
        return None
    new, old = change.version, change.old_version
    if new is None or old is None or (new.timestamp, new.origin) != (old.timestamp, old.origin):
        return None
    if change.echo and (change.image or {}).get(fields.nonce) is not None:
        return None  # the replicator's own write
    if _user(change.image, fields) == _user(change.old_image, fields):
        return None  # rewritten unchanged: nothing is lost
    return Violation(
        ViolationKind.KEPT_TIMESTAMP,
        change.key,
        source,
        change.sequence_number,
        new.raw_timestamp or str(new.timestamp),
        replicated=not change.echo,
    )


def _seconds(change: Change, source: str, batch_has_ms: str | None) -> Violation | None:
    version = change.version
    if change.operation is not Operation.PUT or change.echo or version is None:
        return None
    if version.timestamp >= MILLISECONDS_FROM or version.timestamp <= 0:
        return None
    old = change.old_version
    if old is not None and old.timestamp >= MILLISECONDS_FROM:
        other: str | None = old.raw_timestamp or str(old.timestamp)
    else:
        other = batch_has_ms
    if other is None:
        return None
    raw = version.raw_timestamp or str(version.timestamp)
    return Violation(
        ViolationKind.SECONDS_TIMESTAMP, change.key, source, change.sequence_number, raw, other
    )


def _reverted(conflict: Conflict) -> Violation | None:
    if conflict.outcome is not ConflictOutcome.LOST or conflict.operation != "put":
        return None
    other = None if conflict.other is None else str(conflict.other.timestamp)
    return Violation(
        ViolationKind.REVERTED,
        conflict.key,
        conflict.region,
        conflict.sequence_number,
        conflict.change.raw_timestamp or str(conflict.change.timestamp),
        other,
        replicated=False,
    )


def find_violations(
    changes: Sequence[Change],
    lost_locally: Iterable[Conflict],
    *,
    source: str,
    fields: SystemAttributes,
) -> tuple[Violation, ...]:
    """The contract violations among one batch of ``source``'s changes."""
    millis = next(
        (
            c.version.raw_timestamp or str(c.version.timestamp)
            for c in changes
            if c.version is not None and not c.echo and c.version.timestamp >= MILLISECONDS_FROM
        ),
        None,
    )
    found: list[Violation] = []
    for change in changes:
        for violation in (
            _kept_timestamp(change, source, fields),
            _seconds(change, source, millis),
        ):
            if violation is not None:
                found.append(violation)
    found.extend(v for v in map(_reverted, lost_locally) if v is not None)
    return tuple(found)
