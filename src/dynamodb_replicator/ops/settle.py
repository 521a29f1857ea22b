"""Settling a diff: tell keys whose changes are still in flight from keys that diverged.

A scan reads each region at a slightly different moment, so under live traffic it finds keys
that differ only because a change has not reached every region yet. Settling decides each
differing key:

- **in flight**: it agrees in every region once replication has caught up with what the
  diff read;
- **diverged**: it still differs after replication has handled every change that was
  visible when it was read, and nothing has changed it since: replication will not fix it
  (``repair`` does).

With runner checkpoints (``method="checkpoints"``) settling goes in rounds: read the keys in
every region (strongly consistent), a moment later (a change reaches its stream shortly
after it is readable) mark every source stream's position (``aws/positions.py``), wait until
every (source, target) checkpoint has passed its mark, read the keys again. A key that now
agrees was in flight; one that changed meanwhile (new writes) goes to the next round; one
that differs exactly as before for CONFIRM rounds in a row diverged. Without checkpoints
(replication on Lambda) the keys are read again until they agree (``method="reread"``);
that cannot prove divergence, so what still differs at the bound is *unsettled*. Either way
the wait is bounded by ``timeout``; keys still undecided then are reported as unsettled
(diverged or lagging), with the reason.

Waiting cannot settle anything when nothing replicates, so settling stops early (the keys
left are unsettled, with the reason) when the ``idle`` probe says, for IDLE_GRACE_SECONDS in
a row, that no runner holds a lease on the shards whose marks are behind, or, re-reading,
when no differing key changed for QUIET_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynamodb_replicator.aws.positions import Mark
from dynamodb_replicator.ops.diff import Row, key_differs

__all__ = [
    "KeyReader",
    "Seen",
    "SettleReport",
    "Tracker",
    "agrees",
    "settle",
]

SAMPLES = 5
POLL_SECONDS = 0.5
STREAM_DELAY = 1.0  # seconds from a change being readable to its stream record being readable
# No runner held the shards this long in a row: none is taking them over (a crashed
# runner's lease expires, then the next coordination round, at most 5 s, takes it).
IDLE_GRACE_SECONDS = 10.0
QUIET_SECONDS = 15.0  # re-reading: no differing key changed this long, nothing replicates
CONFIRM = 2  # settled rounds a key must differ unchanged in before it counts as diverged

Seen = tuple[tuple[str, Row | None], ...]
"""One key in every region, in region order (the first is diff's reference): the region and
its row of the key (``ops.diff.Row``: content digest, version, residency scope) or None."""


class KeyReader(Protocol):
    """Reads keys (``codec.key_to_json`` texts) in every region, strongly consistent."""

    def read(self, keys: Sequence[str]) -> dict[str, Seen]: ...


class Tracker(Protocol):
    """Marks stream positions and tells which marks the checkpoints have not passed."""

    def mark(self) -> Sequence[Mark]: ...

    def behind(self, marks: Sequence[Mark]) -> Sequence[Mark]: ...


def agrees(seen: Seen) -> bool:
    """No difference as ``diff`` counts one: the same content under the same version in
    every region its residency scope allows, and nothing outside it."""
    return not key_differs(seen)


@dataclass(slots=True)
class SettleReport:
    """How the differing keys of one table settled."""

    method: str  # "checkpoints" or "reread"
    in_flight: int = 0
    diverged: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)  # diverged or lagging: time ran out
    reason: str | None = None  # why keys are unsettled
    seconds: float = 0.0
    timeout: float = 0.0
    early: bool = False  # stopped before the timeout: nothing was replicating

    @property
    def clean(self) -> bool:
        return not self.diverged and not self.unsettled

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "in_flight": self.in_flight,
            "diverged": len(self.diverged),
            "unsettled": len(self.unsettled),
            "timed_out": bool(self.unsettled) and not self.early,
            "stopped_early": self.early,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "timeout": self.timeout,
            "samples": {
                "diverged": self.diverged[:SAMPLES],
                "unsettled": self.unsettled[:SAMPLES],
            },
        }


@dataclass(frozen=True, slots=True)
class _Pending:
    seen: Seen
    read_at: float
    steady: int = 0  # settled rounds in a row that found it differing exactly like this


def _sort(
    report: SettleReport,
    now: Mapping[str, Seen],
    before: Mapping[str, _Pending],
    read_at: float,
    *,
    settled: bool,
) -> dict[str, _Pending]:
    """Count keys that agree as in flight and, after a settled round (every mark passed),
    keys unchanged for CONFIRM rounds as diverged; return the rest."""
    left: dict[str, _Pending] = {}
    for key, seen in now.items():
        earlier = before.get(key)
        if agrees(seen):
            report.in_flight += 1
        elif settled and earlier is not None and earlier.seen == seen:
            if earlier.steady + 1 >= CONFIRM:
                report.diverged.append(key)
            else:
                left[key] = _Pending(seen, earlier.read_at, earlier.steady + 1)
        else:
            left[key] = _Pending(seen, read_at)
    return left


def settle(
    keys: Sequence[str],
    reader: KeyReader,
    tracker: Tracker | None,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
    idle: Callable[[Sequence[Mark]], str | None] | None = None,
) -> SettleReport:
    """Decide each differing key (see the module docstring); ``tracker`` None: re-read.
    ``idle(behind)``: why nothing will pass those marks (no runner holds their shards), or
    None."""
    began = clock()
    deadline = began + timeout
    report = SettleReport("reread" if tracker is None else "checkpoints", timeout=timeout)
    pending = _sort(report, reader.read(keys), {}, began, settled=False)
    moved_at = began  # re-reading: when a differing key last changed
    while pending and clock() < deadline:
        if tracker is None:
            if clock() - moved_at >= QUIET_SECONDS:
                report.reason, report.early = _quiet_reason(len(pending)), True
                break
            wait(POLL_SECONDS)
        else:
            # A change is in its stream only shortly after it is visible: mark a moment later.
            newest = max(p.read_at for p in pending.values())
            wait(max(0.0, min(newest + STREAM_DELAY, deadline) - clock()))
            behind, stopped = _wait_for(tracker, tracker.mark(), deadline, clock, wait, idle=idle)
            if behind:
                report.reason = stopped or _behind_reason(behind, timeout)
                report.early = stopped is not None
                break
        read_at = clock()
        now = reader.read(list(pending))
        if any(seen != pending[key].seen for key, seen in now.items()):
            moved_at = read_at
        pending = _sort(report, now, pending, read_at, settled=tracker is not None)
    report.unsettled = sorted(pending)
    if pending and report.reason is None:
        report.reason = (
            f"{len(pending)} keys still differed when the {timeout:g} s settle wait ended"
            + (
                " (no runner checkpoints: settled by re-reading; replication may lag)"
                if tracker is None
                else " (new writes kept changing them)"
            )
        )
    report.diverged.sort()
    report.seconds = clock() - began
    return report


def _quiet_reason(count: int) -> str:
    return (
        f"{count} keys still differed and none changed in {QUIET_SECONDS:g} s of re-reading: "
        "no runner checkpoints and nothing moving, so replication is not running here "
        "(re-reading cannot prove a divergence)"
    )


def _behind_reason(behind: Sequence[Mark], timeout: float) -> str:
    shown = "; ".join(m.describe() for m in behind[:3])
    return (
        f"replication had not reached the positions recorded after the scan within "
        f"{timeout:g} s: {shown} (is a runner running with this configuration, and keeping up?)"
    )


def _wait_for(
    tracker: Tracker,
    marks: Sequence[Mark],
    deadline: float,
    clock: Callable[[], float],
    wait: Callable[[float], None],
    *,
    idle: Callable[[Sequence[Mark]], str | None] | None,
) -> tuple[Sequence[Mark], str | None]:
    """Poll until every mark is passed (returns nothing), the deadline (returns the rest),
    or ``idle`` says why nothing will pass them (returns the rest and that reason)."""
    behind = tracker.behind(marks)
    idle_since: float | None = None
    while behind and clock() < deadline:
        stopped = idle(behind) if idle is not None else None
        if stopped is None:
            idle_since = None
        else:
            idle_since = clock() if idle_since is None else idle_since
            if clock() - idle_since >= IDLE_GRACE_SECONDS:
                return behind, stopped
        wait(min(POLL_SECONDS, max(deadline - clock(), 0.0)))
        behind = tracker.behind(behind)
    return behind, None
