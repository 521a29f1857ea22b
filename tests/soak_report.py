"""Where a fault run's recovery time goes: what ``make soak`` prints beside convergence.

- ``target_backlog``: the target writes not applied yet, read from the source streams after
  each target's checkpoint (straight from DynamoDB Local, not through the fault proxy) and
  planned as the runner plans them (echoes dropped);
- ``log_digest``: from the runners' JSON logs, the deadline misses, page-size halvings,
  failures by kind, and each restart's phases (killed, started, worker id claimed, shards
  leased).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.state import DynamoStateStore
from dynamodb_replicator.aws.store import DynamoStore
from dynamodb_replicator.aws.streams import StreamClient
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.codec import decode_record
from dynamodb_replicator.core.errors import NotFoundError
from dynamodb_replicator.core.model import RegionSpec, SystemAttributes
from dynamodb_replicator.core.plan import plan_changes
from dynamodb_replicator.core.policy import LastWriterWins
from dynamodb_replicator.core.retry import Backoff
from dynamodb_replicator.core.streams import END, ShardRef
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.testing.local import free_port
from tests.runner_process import RunnerProcess, unique_worker_id

__all__ = ["COUNTERS", "Drain", "Successors", "failure_kind", "log_digest", "target_backlog"]

FIELDS = SystemAttributes()
POLICY = LastWriterWins(FIELDS)


COUNTERS = ("applied_total", "stale_total", "failed_total", "retried_total")
"""The runner's write counters (its metrics, summed over the pairs) a soak adds up."""

SAMPLE_S = 10.0  # between two readings of the last runner's counters while it drains


class Successors:
    """A runner and its successors: each started under the same worker id once the one
    before was killed, as a supervisor restarts a process (it takes over its claim and
    leases once they expire), each with a log of its own (``runner-N.log``) and, with
    ``metrics``, a metrics port whose write counters are read before each kill."""

    def __init__(self, config: Path, directory: Path, *, metrics: bool = False) -> None:
        self.config, self.directory, self.metrics = config, directory, metrics
        self.worker = unique_worker_id("faults")
        self.all: list[RunnerProcess] = []
        self.ports: list[int] = []
        self.killed_at: list[float] = []  # epoch seconds of each kill
        self.counted: Counter[str] = Counter()  # the killed runners' counters, read at the kill

    @property
    def last(self) -> RunnerProcess:
        return self.all[-1]

    def start(self) -> RunnerProcess:
        self.ports.append(free_port())
        flags = [f"--metrics-port={self.ports[-1]}"] if self.metrics else []
        log = self.directory / f"runner-{len(self.all)}.log"
        self.all.append(RunnerProcess(self.config, log, self.worker, flags).start())
        return self.last

    def totals(self) -> dict[str, float]:
        """The last runner's metrics, summed over their labels (empty without ``metrics``)."""
        return self.last.totals(self.ports[-1]) if self.metrics else {}

    def kill(self) -> None:
        """SIGKILL the last runner, its counters read just before."""
        self.counted.update(self.totals())
        self.last.kill()
        self.killed_at.append(time.time())

    def counters(self) -> dict[str, int]:
        """The write counters of every runner so far (``COUNTERS``)."""
        now = self.counted + Counter(self.totals())
        return {name: int(now[name]) for name in COUNTERS}

    def close(self) -> None:
        for runner in self.all:
            runner.close()


class Drain:
    """The converge phase, watched from the moment the load stopped: the backlog then (read
    on a thread of its own while the runner drains: its checkpoints are read first, so it
    is the backlog at most a region's reading after the stop) and the last runner's target
    writes (applied or found stale) every ``SAMPLE_S``."""

    def __init__(
        self, runners: Successors, table: str, endpoint_url: str, regions: Sequence[str]
    ) -> None:
        self.runners = runners
        self.where = (endpoint_url, table, regions)
        self.load_at_stop = os.getloadavg()
        self.samples: list[tuple[float, float]] = [(time.monotonic(), self._done())]
        self.backlog: int | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(
                target=self._read_backlog, args=(table, endpoint_url, regions), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _read_backlog(self, table: str, endpoint_url: str, regions: Sequence[str]) -> None:
        self.backlog = target_backlog(endpoint_url, table, regions)

    def _done(self) -> float:
        totals = self.runners.totals()
        return totals.get("applied_total", 0.0) + totals.get("stale_total", 0.0)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append((time.monotonic(), self._done()))

    def report(self, converged_s: float) -> dict[str, Any]:
        """What the converge phase that took ``converged_s`` seconds drained, and how fast."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.samples.append((time.monotonic(), self._done()))
        d0, d1 = self.samples[0][1], self.samples[-1][1]
        windows = [
            round((b - a) / (tb - ta)) for (ta, a), (tb, b) in itertools.pairwise(self.samples)
        ]
        return {
            "backlog_at_stop": self.backlog,
            "backlog_at_end": target_backlog(*self.where),
            "drained_after_stop": round(d1 - d0),
            "drain_writes_per_s": round((d1 - d0) / max(converged_s, 1e-9)),
            "drain_writes_per_s_by_window": windows,
            "runner_counters": self.runners.counters(),
            "load_average": {
                "at_stop": [round(v, 1) for v in self.load_at_stop],
                "at_end": [round(v, 1) for v in os.getloadavg()],
            },
        }


def target_backlog(endpoint_url: str, table: str, regions: Sequence[str]) -> int:
    """Target writes that ``table``'s streams hold after their targets' checkpoints: what
    the runner still has to apply (echoes of its own writes are not counted, as it drops
    them; deletes as one write, as the write counters count them)."""
    total = 0
    for source in regions:
        spec = RegionSpec(source, endpoint_url)
        dynamodb = make_client("dynamodb", spec)
        streams = StreamClient(source, dynamodb, make_client("dynamodbstreams", spec))
        state = DynamoStateStore(dynamodb, defaults.STATE_TABLE, source)
        store = DynamoStore(dynamodb, source, Backoff(attempts=1))
        tombstones = TombstoneTable(store, FIELDS, defaults.TOMBSTONE_SUFFIX)
        targets = [r for r in regions if r != source]
        for arn in streams.stream_arns(table):
            for shard in streams.shards(arn):
                try:
                    saved = state.load(ShardRef(table, arn, shard.shard_id))
                except NotFoundError:
                    saved = {}  # no runner has made its state table yet
                behind = {t: saved.get(t) for t in targets if saved.get(t) != END}
                if not behind:
                    continue
                records = _after(streams, arn, shard.shard_id, _lowest(behind.values()))
                changes = [
                    decode_record(r, source_region=source, fields=FIELDS, from_json=False)
                    for r in records
                ]
                known = tombstones.read(table, {c.key for c in changes}) if changes else {}
                for target, position in behind.items():
                    mine = [c for c in changes if _later(c.sequence_number, position)]
                    plan = plan_changes(
                        mine,
                        source=source,
                        regions=[target],
                        policy=POLICY,
                        fields=FIELDS,
                        tombstones=known,
                    )
                    total += len(plan.writes[target])
    return total


def _lowest(positions: Iterable[str | None]) -> str | None:
    present = [p for p in positions if p is not None]
    if len(present) < len(list(positions)) or not present:
        return None  # a target without a checkpoint reads the shard from its start
    return min(present, key=int)


def _later(sequence: str, position: str | None) -> bool:
    return position is None or int(sequence) > int(position)


def _after(streams: StreamClient, arn: str, shard_id: str, position: str | None) -> list[Any]:
    """Every record of the shard after ``position`` (DynamoDB Local answers an empty page
    only at the end of what is written)."""
    records: list[Any] = []
    iterator: str | None = streams.iterator(arn, shard_id, position)
    while iterator is not None:
        page = streams.read(iterator)
        if not page.records:
            break
        records.extend(page.records)
        iterator = page.next_iterator
    return records


# -- the runners' logs ----------------------------------------------------------------------
_KINDS = (
    ("deadline", re.compile(r"no time left")),
    ("throttled", re.compile(r"Throttl|ProvisionedThroughputExceeded")),
    ("server_error", re.compile(r"InternalServerError|ServiceUnavailable")),
    ("connect_timeout", re.compile(r"Connect timeout")),
    ("read_timeout", re.compile(r"Read timeout")),
    ("dropped", re.compile(r"Connection was closed|reset|Broken pipe", re.IGNORECASE)),
)


def failure_kind(reason: str) -> str:
    """The kind of failure a logged ``reason`` names (``other`` when none matches)."""
    for kind, pattern in _KINDS:
        if pattern.search(reason):
            return kind
    return "other"


def _events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a traceback or other plain text
        if isinstance(event, dict) and "message" in event and "time" in event:
            found.append(event)
    return found


def _seconds(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()


def log_digest(logs: Sequence[Path], killed_at: Sequence[float]) -> dict[str, Any]:
    """What the runners' logs (one per runner, in start order) say about lost time.
    ``killed_at``: when each runner but the last was SIGKILLed (epoch seconds): each
    restart's phases are counted from it."""
    writes: Counter[str] = Counter()  # "write failed": a write gave up, by kind
    pages: Counter[str] = Counter()  # a page's cursor backed off, by kind
    halvings = 0
    restarts = []
    for index, log in enumerate(logs):
        events = _events(log)
        for event in events:
            message, reason = str(event["message"]), str(event.get("reason", ""))
            if message == "write failed":
                writes[failure_kind(reason)] += 1
            elif message.startswith("replication to these targets waits for a retry"):
                pages[failure_kind(reason)] += 1
            elif message.startswith("page size halved"):
                halvings += 1
        if index > 0 and index - 1 < len(killed_at):
            restarts.append(_restart(events, killed_at[index - 1]))
    return {
        "deadline_misses": {"writes": writes["deadline"], "pages": pages["deadline"]},
        "page_size_halvings": halvings,
        "writes_given_up": dict(sorted(writes.items())),
        "page_retries": dict(sorted(pages.items())),
        "restarts": _restart_summary(restarts),
    }


def _restart(events: Sequence[Mapping[str, Any]], killed: float) -> dict[str, float]:
    """Where the time from a kill to the successor's last shard lease went: starting the
    process (imports), its checks, making its clients, claiming the worker id (the killed
    process's claim is waited for), and taking the leases; ``total``."""
    started = [e for e in events if e["message"] == "runner started"]
    leases = [_seconds(e) for e in events if e["message"] == "shard leased"]
    if not started or not leases:
        return {}
    phases = {k: float(started[0].get(f"{k}_s", 0.0)) for k in ("checks", "clients", "claim")}
    at = _seconds(started[0])
    return {
        "process": at - killed - sum(phases.values()),
        **phases,
        "leases": max(leases) - at,
        "total": max(leases) - killed,
    }


def _restart_summary(restarts: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Each phase's mean and most over the restarts (seconds)."""
    summary: dict[str, Any] = {"count": len(restarts)}
    for phase in ("process", "checks", "clients", "claim", "leases", "total"):
        values = [r[phase] for r in restarts if phase in r]
        if values:
            summary[phase] = {
                "mean_s": round(sum(values) / len(values), 2),
                "max_s": round(max(values), 2),
            }
    return summary
