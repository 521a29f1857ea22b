"""How add-region copies into the joining region's table: decided once, kept for resumes.

The fast copy (unconditional BatchWriteItem) overwrites whatever the table holds, so it runs
only into a table that this add-region run created, or found empty (and with no remembered
deletes) when it started. Any other table may hold versions newer than the source's, and
items no other region has: it gets the conditional copy (the replicator's apply rule) and
its items are merged out to every other region by the same rule (``ops/merge.py``).

The decision is saved in the joining region's state table before the first write, with the
copy's resume points: a resumed run finds a table that is neither new nor empty any more
and must not mistake its own half-done copy for data to merge, nor the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.aws.errors import translated
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.tables import describe_table

__all__ = ["CopyMode", "decide_mode", "holds_items"]

_WHY = {
    "fast:created": "fast copy (batch writes): this add-region run created the table",
    "fast:empty": "fast copy (batch writes): the table was empty when this add-region run started",
    "merge": "conditional copy and merge both ways: the table held items when this "
    "add-region run started (a newer version in it wins and is copied out)",
}


@dataclass(frozen=True, slots=True)
class CopyMode:
    """``fast``: unconditional batch writes; ``merge``: the joining table's own items go out
    to the other regions; ``why``: for the operator."""

    fast: bool
    merge: bool
    why: str


def holds_items(client: Any, physical: str, region: str) -> bool:
    """True when the table exists and holds at least one item (a strongly consistent read;
    ItemCount may be hours old)."""
    if describe_table(client, physical, region) is None:
        return False
    with translated(region, f"Scan {physical}"):
        page = client.scan(TableName=physical, Limit=1, ConsistentRead=True)
    return bool(page.get("Items") or page.get("LastEvaluatedKey"))


def decide_mode(
    state: DynamoStateStore,
    table: str,
    *,
    created: bool,
    configured: bool,
    empty: Callable[[], bool],
    restart: Callable[[], None],
) -> CopyMode:
    """The copy mode for ``table``: recorded by an earlier run of this add-region, else
    decided now (``restart`` then forgets resume points of an earlier, unrelated copy).
    ``configured``: the region is in the config already, runners may write into it."""
    name = f"add-region:{table}"
    recorded = None if created else state.load_note(name)
    if recorded is None:
        recorded = "fast:created" if created else "fast:empty" if empty() else "merge"
        restart()
        state.save_note(name, recorded)
        why = _WHY[recorded]
    else:
        why = f"{_WHY[recorded]} (recorded when this copy started)"
    merge = recorded == "merge"
    if configured:  # a --resume: runners replicate into it now, batch writes would race them
        return CopyMode(False, merge, f"conditional copy: the region is configured already; {why}")
    return CopyMode(recorded != "merge", merge, why)
