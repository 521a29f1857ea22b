"""A concurrent workload whose expected final state is computed from the writes' own results.

Every region's writer does puts, partial updates and deletes on a small key space. Its
timestamps increase per region but overlap across regions, so equal-timestamp conflicts
and clock-skewed (regressing) writes happen on purpose. Each write's outcome is recorded
from DynamoDB's own answer (ALL_NEW for updates, ALL_OLD for deletes), so the expected
winner of every key is known exactly: the largest version; a delete beats a put of the
same version.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ConnectionClosedError

from dynamodb_replicator.core.model import SystemAttributes, Version
from dynamodb_replicator.core.policy import LastWriterWins, stored_version

FIELDS = SystemAttributes()
POLICY = LastWriterWins(FIELDS)


@dataclass(frozen=True)
class Event:
    key: str
    version: Version
    delete: bool
    content: dict[str, Any] | None  # user attributes of the written version


@dataclass
class Workload:
    clients: dict[str, Any]
    table: str = "Orders"
    keys: int = 20
    seed: int = 1
    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def _write(self, region: str, rng: random.Random, stamp: int) -> None:
        client = self.clients[region]
        key = f"k{rng.randrange(self.keys)}"
        ddb_key = {"pk": {"S": key}}
        roll = rng.random()
        if roll < 0.5:
            item = {**ddb_key, FIELDS.timestamp: {"N": str(stamp)}, "v": {"S": f"{region}-{stamp}"}}
            client.put_item(TableName=self.table, Item=item)
            self._record(Event(key, Version.of(str(stamp), region), False, user_attributes(item)))
        elif roll < 0.8:
            new = client.update_item(
                TableName=self.table,
                Key=ddb_key,
                UpdateExpression="SET #t = :t, #u = :u",
                ExpressionAttributeNames={"#t": FIELDS.timestamp, "#u": f"u_{region[:2]}"},
                ExpressionAttributeValues={":t": {"N": str(stamp)}, ":u": {"N": str(stamp)}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
            self._record(Event(key, Version.of(str(stamp), region), False, user_attributes(new)))
        else:
            old = client.delete_item(TableName=self.table, Key=ddb_key, ReturnValues="ALL_OLD")
            version = stored_version(old.get("Attributes"), region, FIELDS)
            if version is not None:
                self._record(Event(key, version, True, None))

    def run_region(
        self,
        region: str,
        operations: int,
        start: int,
        pause: float = 0.0,
        until: threading.Event | None = None,
    ) -> None:
        """``operations`` writes, or (with ``until``) writes until that event is set."""
        rng = random.Random(f"{self.seed}-{region}")
        stamp = start
        done = 0
        while (until is not None and not until.is_set()) or (until is None and done < operations):
            done += 1
            stamp += rng.randint(1, 3)
            self._write(region, rng, stamp)
            if pause:
                time.sleep(pause)

    def run_paced(self, region: str, per_second: float, until: threading.Event) -> None:
        """Writes at ``per_second`` (or as fast as the server answers) until ``until``."""
        rng = random.Random(f"{self.seed}-{region}")
        stamp, due = 1_000, time.monotonic()
        while not until.is_set():
            stamp += rng.randint(1, 3)
            self._write(region, rng, stamp)
            due = max(due + 1 / per_second, time.monotonic() - 1.0)  # no catch-up bursts
            until.wait(max(0.0, due - time.monotonic()))

    def run(
        self,
        operations: int,
        start: int = 1_000,
        pause: float = 0.0,
        between: Callable[[], None] | None = None,
    ) -> None:
        """All regions write concurrently; ``between`` runs in the middle (e.g. a kill)."""
        half = operations // 2
        for count in (half, operations - half):
            threads = [
                threading.Thread(target=self.run_region, args=(r, count, start, pause))
                for r in self.clients
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            start += 3 * half
            if between is not None:
                between()
                between = None

    def expected(self) -> dict[str, dict[str, Any] | None]:
        winners: dict[str, Event] = {}
        for event in self.events:
            best = winners.get(event.key)
            rank = (POLICY.order_key(event.version), event.delete)
            if best is None or rank > (POLICY.order_key(best.version), best.delete):
                winners[event.key] = event
        return {key: event.content for key, event in winners.items()}


class BackgroundLoad:
    """Every region of ``workload`` writes in its own thread, ``per_second`` writes in all,
    until ``stop`` or until ``seconds`` pass: a bound, so a failing test never leaves writers
    running. One thread per region keeps each region's timestamps increasing."""

    def __init__(self, workload: Workload, *, per_second: float, seconds: float) -> None:
        self.workload = workload
        self.done = threading.Event()
        self.timer = threading.Timer(seconds, self.done.set)
        share = per_second / len(workload.clients)
        self.threads = [
            threading.Thread(target=workload.run_paced, args=(r, share, self.done))
            for r in workload.clients
        ]
        self.began = self.ended = 0.0

    def start(self) -> BackgroundLoad:
        self.began = time.monotonic()
        self.timer.start()
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self.timer.cancel()
        for thread in self.threads:
            thread.join()
        self.ended = self.ended or time.monotonic()

    def rate(self) -> float:
        """Writes per second so far."""
        return len(self.workload.events) / max((self.ended or time.monotonic()) - self.began, 1e-9)


def user_attributes(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` without the replicator's own attributes."""
    added = FIELDS.added()
    return {k: v for k, v in item.items() if k not in added}


def region_state(client: Any, table: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        for item in page["Items"]:
            items[item["pk"]["S"]] = user_attributes(item)
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def differences(
    clients: dict[str, Any],
    table: str,
    expected: dict[str, dict[str, Any] | None],
    may_hold: Callable[[dict[str, Any], str], bool] | None = None,
) -> list[str]:
    """What differs from the expected winners, per region (empty: converged); with
    ``may_hold(item, region)``, a region is to hold only the winners it may hold."""
    found = []
    for region, client in clients.items():
        want = {
            k: v
            for k, v in expected.items()
            if v is not None and (may_hold is None or may_hold(v, region))
        }
        have = region_state(client, table)
        for key in sorted(set(want) | set(have)):
            if want.get(key) != have.get(key):
                found.append(f"{region} {key}: want {want.get(key)} have {have.get(key)}")
    return found


def wait_until_converged(
    clients: dict[str, Any],
    table: str,
    expected: dict[str, dict[str, Any] | None],
    timeout: float = 90.0,
    may_hold: Callable[[dict[str, Any], str], bool] | None = None,
) -> float:
    """Poll until every region holds exactly the expected winners (those it ``may_hold``);
    seconds it took."""
    started = time.monotonic()
    last: Sequence[str] = []
    while time.monotonic() - started < timeout:
        try:
            last = differences(clients, table, expected, may_hold)
        except ConnectionClosedError as exc:
            # DynamoDB Local may close a kept-alive connection (its clients make one
            # attempt, retries being the replicator's): this poll saw nothing, poll again.
            last = [f"the poll's scan failed: {exc}"]
        else:
            if not last:
                return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not converged after {timeout} s: {last[:10]} ({len(last)} differences)")
