"""A seeded fuzz of one ShardWorker's cursors: targets whose pages miss the deadline
(page_size.py's premise: a page's tombstone reads grow with it, before its first write)
at a slowness that changes, throttles at random records, a target removed and added back
by reloads, expired iterators, and records arriving in bursts; splits, merges and each
cursor's page size follow. Then calm: every target fast and present.

Checked: no checkpoint passes a record its target did not apply, none moves back, and
once calm every target's checkpoint reaches the last record."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from dynamodb_replicator.core.conflicts import Conflict
from dynamodb_replicator.core.errors import DeadlineError, ReplicatorError, ThrottledError
from dynamodb_replicator.core.ports import TargetResult
from dynamodb_replicator.core.replicator import BatchResult
from dynamodb_replicator.core.streams import END, ShardRef
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.clock import ManualClock

from .test_shardworker import ARN, TARGETS, FakeStream, record

REF = ShardRef("Orders", ARN, "s1")
WINDOW = 5.0  # seconds a page has before its deadline (renewals stalled)
SLOWNESS = (0.01, 0.1, 0.4, 1.0, 3.0)  # tombstone read seconds a record


class CursorFuzz:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()  # pages are applied on threads of their own
        self.applied: dict[str, set[int]] = {t: set() for t in TARGETS}
        self.read_s = dict.fromkeys(TARGETS, 0.01)
        self.throttle = dict.fromkeys(TARGETS, 0.0)
        self.saved: dict[str, str] = {}
        self.found: list[str] = []
        self.halved = self.split = 0  # steps with a halved page size, with cursors apart
        self.stream = FakeStream({"s1": [record(n) for n in range(1, self.rng.randint(2, 300))]})
        self.last = len(self.stream.shards["s1"])
        self.clock = ManualClock()
        self.worker = ShardWorker(
            REF,
            source=self.stream,
            checkpoints=self,
            process=self.process,
            targets=TARGETS,
            parent=None,
            clock=self.clock,
            page_limit=self.rng.choice([8, 64, 100]),
        )

    # -- the checkpoint store and the targets --------------------------------------------
    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved)

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        for target, position in positions.items():
            if position == END:
                continue
            at = int(position)
            if target in self.saved and at < int(self.saved[target]):
                self.found.append(f"{target}'s checkpoint moved back to {at}")
            with self.lock:
                missing = [s for s in range(1, at + 1) if s not in self.applied[target]]
            if missing:
                self.found.append(f"{target}'s checkpoint {at} passes unapplied {missing[:3]}")
            self.saved[target] = position

    def process(
        self,
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Callable[[Conflict], bool] | None = None,
        written: Callable[[], None] | None = None,
        *,
        ready: Callable[[], None] | None = None,
    ) -> BatchResult:
        if ready is not None:
            ready()
        results = {}
        for target in sorted(targets):  # one order of draws, whatever the hash seed
            with self.lock:
                read_s, throttle = self.read_s[target], self.throttle[target]
            elapsed, failed = read_s * len(records), None
            error: ReplicatorError | None = None
            for r in records:
                seq = int(r["dynamodb"]["SequenceNumber"])
                if elapsed >= WINDOW:
                    failed, error = str(seq), DeadlineError("no time left to start this write")
                    break
                with self.lock:
                    if self.rng.random() < throttle:
                        failed, error = str(seq), ThrottledError("throttled")
                        break
                    self.applied[target].add(seq)
                elapsed += 0.05
            results[target] = TargetResult(target, failed_sequence=failed, error=error)
        return BatchResult(results)

    # -- the run ------------------------------------------------------------------------
    def run(self, steps: int = 400) -> None:
        removed = False
        for _ in range(steps):
            with self.lock:
                removed = self._event(removed)
            self.clock.t += self.rng.choice([0.1, 0.5, 2.0, 10.0])
            self._step()
            self.halved += any(c.size.limit < c.size.most for c in self.worker.cursors)
            self.split += len(self.worker.cursors) > 1
        with self.lock:
            self.read_s = dict.fromkeys(TARGETS, 0.01)
            self.throttle = dict.fromkeys(TARGETS, 0.0)
        if removed:
            self.worker.add_targets([TARGETS[-1]])
        for _ in range(20 * steps):
            if self.caught_up() and not any(c.inflight for c in self.worker.cursors):
                break
            self.clock.t += 1.0
            self._step()
        self.worker.flush()

    def _event(self, removed: bool) -> bool:
        roll, target = self.rng.random(), self.rng.choice(TARGETS)
        if roll < 0.1:
            self.read_s[target] = self.rng.choice(SLOWNESS)
        elif roll < 0.15:
            self.throttle[target] = self.rng.choice([0.0, 0.0, 0.05, 0.3])
        elif roll < 0.18:  # a reload removes the last target, or adds it back
            change = self.worker.add_targets if removed else self.worker.remove_targets
            change([TARGETS[-1]])
            return not removed
        elif roll < 0.4:
            for _ in range(self.rng.randint(1, 30)):
                self.last += 1
                self.stream.shards["s1"].append(record(self.last))
        elif roll < 0.45:
            self.stream.expire_next = 1
        return removed

    def _step(self) -> None:
        with contextlib.suppress(ReplicatorError):  # as run_shard: the next step goes on
            self.worker.step()
        # The page read ahead is applied before the next event: a seed replays the same.
        for cursor in self.worker.cursors:
            for flight in cursor.inflight:
                flight.finish_quietly()

    def caught_up(self) -> bool:
        return all(self.saved.get(t) == f"{self.last:021d}" for t in TARGETS)

    def violations(self) -> list[str]:
        found = list(self.found)
        if not self.caught_up():
            found.append(f"not caught up with {self.last}: {self.saved}")
        return found
