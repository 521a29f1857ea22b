"""Conflicts: changes that lost, or won over a version their source never saw. Pure.

A replicated write meets one of three things in a region:

* the version its source replaced, or an older one the region has not caught up from:
  the normal case, nothing to report;
* a newer version (or a newer delete): the change **lost** (the write was stale);
* a version newer than the one the source replaced, but older than the change: a
  concurrent write in another region that this change **won** over (and overwrote).

Only a different version written elsewhere makes a conflict (``met_another_write``): a
replayed or late put meeting its own version (deleted since, say) or a later version of
its own region is the normal order of one region's writes.

The source region itself can lose too: an application write older than the version it
replaced (a clock behind), or an insert older than a delete the region remembers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dynamodb_replicator.core.model import Item, ItemKey, Version
from dynamodb_replicator.core.policy import ConflictPolicy, newer

__all__ = ["Conflict", "ConflictOutcome", "met_another_write", "overwrote_concurrent"]


class ConflictOutcome(enum.Enum):
    LOST = "lost"  # the change was not applied: the region holds a newer version
    WON = "won"  # the change replaced a concurrent version its source never saw


@dataclass(frozen=True, slots=True)
class Conflict:
    """One change meeting another version of its item in ``region``.

    ``other`` is the version the region held (None: an item without ``__timestamp``);
    ``other_deleted`` says it was a remembered delete. The items are kept for callers that
    opt in to logging contents; they are never part of the comparison.
    """

    outcome: ConflictOutcome
    key: ItemKey
    region: str
    operation: str  # "put" or "delete"
    change: Version
    other: Version | None
    sequence_number: str
    other_deleted: bool = False
    change_item: Item | None = field(default=None, compare=False, repr=False)
    other_item: Item | None = field(default=None, compare=False, repr=False)


def overwrote_concurrent(
    policy: ConflictPolicy, held: Version | None, incoming: Version, replaced: Version | None
) -> bool:
    """Did writing ``incoming`` over ``held`` overwrite a concurrent version?

    ``replaced`` is the version the change replaced in its source (None for an insert).
    ``held`` is concurrent when the source never saw it: newer than what the source
    replaced. An older ``held`` is a region lagging behind the source, not a conflict.
    """
    if held is None or held == incoming:
        return False
    return replaced is None or newer(policy, held, replaced)


def met_another_write(conflict: Conflict) -> bool:
    """Did a replicated change meet a different version written in another region?

    Not a conflict: the change's own version (a put meeting the delete of that very
    version, as when a put and its delete are applied in one batch or replayed), or a
    version whose origin is the change's own (that region wrote it after the change: a
    late or replayed delivery). An unversioned item is always another write.
    """
    other = conflict.other
    if other is None:
        return True
    return other != conflict.change and other.origin != conflict.change.origin
