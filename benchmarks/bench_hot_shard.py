"""A hot shard: one shard receiving RATE writes/s for SECONDS, replicated to two targets,
with 0, 100 and 250 ms added to every call to the targets.

    .venv/bin/python -m benchmarks.bench_hot_shard

Two sides of the same question:

* ``memory``: the runner's own parts (a shard worker, the replicator, one writer per target)
  in this process, over the in-memory store behind the same store port, every target call
  delayed by a sleep (it holds no CPU), the stream in memory. No server shares the cores,
  so the figures show the design. The runner's CPU is this process's CPU less the thread
  that writes the stream and less the CPU spent inside the in-memory store's own calls (a
  real store spends it on a server). Lag: source ``__timestamp`` to the moment the write
  is in the target store (``lag_page_written_*``: to the moment the target writer says its
  page's writes are done, after the page's last one).
* ``dynamodb_local``: ``dynamodb-replicator run`` (its own process) on DynamoDB Local, the
  targets through the delay proxy, the writes made from this process with the lean client.
  Lag is estimated from the runner's counters, sampled every 0.25 s: at each sample, the
  age of the oldest source write not yet applied to both targets. DynamoDB Local takes
  about 1,000 conditional writes/s on this machine, all three tables together: at 1,000
  source writes/s plus 2,000 target writes/s it is the bottleneck, and its CPU is printed.

The writes are inserts of new keys (each needs a batched tombstone read before its put: two
round trips on the way to a target); one more in-memory run at 250 ms updates 5,000 items
every region holds (one round trip: a put where the item is present), the steady state of
most tables.

"Kept up": every write reached both targets within 2 s after the last one was made, and
the targets were written at no less than 95% of twice the source rate achieved.
"""

from __future__ import annotations

import datetime
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.bench_runner import VisibilityRecorder, fill_backlog, region_endpoints
from benchmarks.common import (
    REGIONS,
    RunnerProcess,
    cpu_seconds,
    fresh_server,
    item,
    report,
    write_config,
)
from benchmarks.delay_proxy import DelayProxy
from dynamodb_replicator.aws.lean import make_lean_client
from dynamodb_replicator.cli.run import tune_interpreter
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.conditions import Condition
from dynamodb_replicator.core.model import Item, ItemKey, RegionSpec
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.core.store import StoreResult
from dynamodb_replicator.core.streams import Page, ShardRef
from dynamodb_replicator.core.tombstones import TombstoneTable
from dynamodb_replicator.core.writer import StoreWriter, WriterOptions
from dynamodb_replicator.core.writes import WriteProtocol
from dynamodb_replicator.runner.shard_thread import run_shard
from dynamodb_replicator.runner.shardworker import ShardWorker
from dynamodb_replicator.testing.memory_store import MemoryStore

__all__ = ["DELAYS", "measure"]

RATE = int(os.environ.get("BENCH_HOT_RATE", "1000"))  # source writes per second
SECONDS = int(os.environ.get("BENCH_HOT_SECONDS", "60"))
DELAYS = (0, 100, 250)  # ms added to every call to a target
UPDATE_KEYS = 5_000  # the updates' run: items every region holds, updated in turn
# Writes in flight per target. On the in-memory store: a page's writes wait for its batched
# tombstone read, then go out at once: a page of up to 1,000 records in one round trip.
DEPTH = int(os.environ.get("BENCH_HOT_DEPTH", "1000"))
# On DynamoDB Local, which takes about 1,000 writes/s in all, more only queues in the server.
LOCAL_DEPTH = 256
TABLE = "Hot"
CATCH_UP_S = 2.0


class DelayedStore:
    """A store port that sleeps ``delay`` before each call of ``inner`` (a round trip) and
    counts the CPU spent inside ``inner`` (what a server would spend). ``landed`` gets the
    lag of every put that applied: the moment it is in the store (a reader would see it)
    less its ``__timestamp`` (ms)."""

    def __init__(self, inner: MemoryStore, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.cpu: list[float] = []
        self.landed: list[float] = []

    @property
    def region(self) -> str:
        return self.inner.region

    def _timed(self, call: Any, *args: Any) -> Any:
        time.sleep(self.delay)
        began = time.thread_time()
        try:
            return call(*args)
        finally:
            self.cpu.append(time.thread_time() - began)

    def put(self, table: str, item: Item, condition: Condition) -> StoreResult:
        result: StoreResult = self._timed(self.inner.put, table, item, condition)
        if result.applied and "__timestamp" in item:
            self.landed.append(time.time() * 1000 - int(item["__timestamp"]["N"]))
        return result

    def delete(self, table: str, key: ItemKey, condition: Condition) -> StoreResult:
        result: StoreResult = self._timed(self.inner.delete, table, key, condition)
        return result

    def get(self, table: str, keys: Collection[ItemKey]) -> Mapping[ItemKey, Item]:
        found: Mapping[ItemKey, Item] = self._timed(self.inner.get, table, keys)
        return found


class MemoryShard:
    """One open stream shard in memory, in GetRecords' shape; iterators are positions."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, key: str, stamp: int, old_stamp: int | None = None) -> None:
        """An insert of ``key`` at ``stamp``; an update when it replaced ``old_stamp``."""
        with self._lock:
            sequence = f"{len(self.records) + 1:021d}"
            image = item(key, stamp)
            body: dict[str, Any] = {
                "ApproximateCreationDateTime": datetime.datetime.now(datetime.UTC),
                "Keys": {"pk": image["pk"]},
                "NewImage": image,
                "SequenceNumber": sequence,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            if old_stamp is not None:
                body["OldImage"] = item(key, old_stamp)
            kind = "INSERT" if old_stamp is None else "MODIFY"
            self.records.append({"eventName": kind, "dynamodb": body})

    def iterator(self, arn: str, shard_id: str, after: str | None) -> str:
        return str(int(after or 0))

    def read(self, iterator: str, limit: int = 1000) -> Page:
        start = int(iterator)
        with self._lock:
            records = self.records[start : start + limit]
        return Page(records, str(start + len(records)))


class Checkpoints:
    """Checkpoints in a dict."""

    def __init__(self) -> None:
        self.saved: dict[ShardRef, dict[str, str]] = {}

    def load(self, shard: ShardRef) -> dict[str, str]:
        return dict(self.saved.get(shard, {}))

    def save(self, shard: ShardRef, positions: Mapping[str, str]) -> None:
        self.saved[shard] = dict(positions)


def _replicator(
    stores: dict[str, DelayedStore], latencies: list[float], settings: ReplicationSettings
) -> Replicator:
    clock = SystemClock()
    writers: dict[str, Any] = {}
    for name, store in stores.items():
        protocol = WriteProtocol(
            store,
            settings.policy,
            settings.fields,
            clock,
            settings.tombstone_suffix,
            settings.tombstone_ttl_seconds,
        )
        writer = StoreWriter(protocol, WriterOptions(max_in_flight=DEPTH))
        writers[name] = writer if name == REGIONS[0] else VisibilityRecorder(writer, latencies)
    return Replicator(
        source=REGIONS[0],
        writers=writers,
        tombstones=TombstoneTable(stores[REGIONS[0]], settings.fields, settings.tombstone_suffix),
        policy=settings.policy,
        fields=settings.fields,
    )


def _produce(
    shard: MemoryShard, stop: threading.Event, cpu: list[float], stamps: dict[str, int] | None
) -> int:
    """Append RATE records/s for SECONDS (10 ms ticks): inserts of new keys, or with
    ``stamps`` (each existing key's last ``__timestamp``) updates of those keys in turn;
    how many."""
    began, made = time.perf_counter(), 0
    keys = sorted(stamps) if stamps else []
    while made < RATE * SECONDS and not stop.is_set():
        due = int((time.perf_counter() - began) * RATE)
        for n in range(made, min(due, RATE * SECONDS)):
            now = int(time.time() * 1000)
            if stamps:
                key = keys[n % len(keys)]
                shard.append(key, now, stamps[key])
                stamps[key] = now
            else:
                shard.append(f"hot-{n}", now)
        made = max(made, min(due, RATE * SECONDS))
        time.sleep(0.01)
    cpu.append(time.thread_time())
    return made


def _quantiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(sorted(values), n=100)
    return cuts[49], cuts[98]


def memory_run(delay_ms: int, *, updates: bool = False) -> dict[str, Any]:
    """The runner's parts over the in-memory store, ``delay_ms`` added per target call;
    the interpreter tuned as ``run`` tunes it. Inserts of new keys (each a batched
    tombstone read, then its put), or with ``updates`` updates of UPDATE_KEYS items every
    region holds (each one put where the item is present)."""
    tune_interpreter()
    settings = ReplicationSettings()
    stores = {
        r: DelayedStore(MemoryStore(r), 0.0 if r == REGIONS[0] else delay_ms / 1000)
        for r in REGIONS
    }
    stamps: dict[str, int] | None = None
    if updates:
        first = int(time.time() * 1000) - 60_000
        stamps = {f"hot-{n}": first for n in range(UPDATE_KEYS)}
        for key, stamp in stamps.items():
            for store in stores.values():
                store.inner.write_directly(
                    TABLE, ItemKey.from_attributes({"pk": {"S": key}}), item(key, stamp)
                )
    latencies: list[float] = []
    replicator = _replicator(stores, latencies, settings)
    shard = MemoryShard()

    def process(
        table: str,
        records: Sequence[Mapping[str, Any]],
        targets: Collection[str],
        logged: Any = None,
        written: Any = None,
        *,
        ready: Any = None,
    ) -> BatchResult:
        return replicator.process(
            table,
            records,
            from_json=False,
            regions=targets,
            logged=logged,
            written=written,
            ready=ready,
        )

    ref = ShardRef(TABLE, "arn:memory/stream/hot", "shard-0")
    clock = SystemClock()
    worker = ShardWorker(
        ref,
        source=shard,
        checkpoints=Checkpoints(),
        process=process,
        targets=list(REGIONS[1:]),
        parent=None,
        clock=clock,
    )
    stop, producer_cpu = threading.Event(), [0.0]
    producer = threading.Thread(
        target=_produce, args=(shard, stop, producer_cpu, stamps), daemon=True
    )
    cpu_before, began = time.process_time(), time.perf_counter()
    producer.start()
    total = RATE * SECONDS * (len(REGIONS) - 1)
    last_write = began + SECONDS
    # The shard's thread as ``run`` runs it: stepped, idle pauses and all, then flushed.
    halt = threading.Event()
    idle_s = defaults.IDLE_POLL_MAX_MS / 1000
    runner = threading.Thread(target=run_shard, args=(worker, halt, clock, idle_s), daemon=True)
    runner.start()
    while len(latencies) < total and time.perf_counter() < last_write + 30:
        time.sleep(0.01)
    elapsed = time.perf_counter() - began
    finished_at = time.perf_counter()
    halt.set()
    producer.join()
    runner.join()
    cpu = time.process_time() - cpu_before - producer_cpu[-1]
    cpu -= sum(sum(store.cpu) for store in stores.values())
    for writer in replicator.writers.values():
        writer.close()
    landed = [lag for region in REGIONS[1:] for lag in stores[region].landed]
    figures = _figures(
        delay_ms,
        done=len(latencies),
        elapsed=elapsed,
        cpu=cpu,
        lags=landed,
        behind_s=finished_at - last_write,
        total=total,
    )
    figures["writes"] = "updates" if updates else "inserts"
    # The same writes timed when their page's writer said it was written (after the
    # page's last write): what the DynamoDB Local run can observe.
    p50, p99 = _quantiles(latencies)
    figures["lag_page_written_p50_ms"] = round(p50, 1)
    figures["lag_page_written_p99_ms"] = round(p99, 1)
    return figures


def _figures(
    delay_ms: int,
    *,
    done: int,
    elapsed: float,
    cpu: float,
    lags: Sequence[float],
    behind_s: float,
    total: int,
) -> dict[str, Any]:
    """One run's figures: ``done`` target writes of ``total`` in ``elapsed`` s, ``cpu`` s of
    the runner's CPU, the last one ``behind_s`` after the last source write."""
    rate = done / elapsed
    p50, p99 = _quantiles(lags)
    return {
        "delay_ms": delay_ms,
        "target_writes": done,
        "target_writes_per_s": round(rate, 1),
        "lag_p50_ms": round(p50, 1),
        "lag_p99_ms": round(p99, 1),
        "runner_cpu_ms_per_target_write": round(1000 * cpu / max(done, 1), 3),
        "runner_cpu_share": round(cpu / elapsed, 2),
        "kept_up": done >= total and behind_s <= CATCH_UP_S,
    }


def _write_schedule(endpoint: str, stamps: list[float]) -> None:
    """RATE writes/s for SECONDS into the source, on schedule (those not made within the
    window are skipped); ``stamps`` gets each one's time (perf_counter) once made."""
    source = make_lean_client("dynamodb", RegionSpec(REGIONS[0], endpoint), pool=32)
    began = time.perf_counter()

    def write(n: int) -> None:
        pause = n / RATE - (time.perf_counter() - began)
        if pause > 0:
            time.sleep(pause)
        if time.perf_counter() - began > SECONDS + 1:
            return  # behind schedule: the window is over (the rate achieved is reported)
        source.put_item(TableName=TABLE, Item=item(f"hot-{n}", int(time.time() * 1000)))
        stamps.append(time.perf_counter())

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(write, range(RATE * SECONDS)))


def local_run(delay_ms: int) -> dict[str, Any]:
    """The runner process on DynamoDB Local, targets through the delay proxy."""
    with fresh_server() as server, DelayProxy(server.port, delay_ms) as proxy:
        fill_backlog(server.endpoint_url, TABLE, 0)
        config = write_config(
            Path(tempfile.mkdtemp()) / "hot.toml",
            region_endpoints(server.endpoint_url, proxy.endpoint_url),
            TABLE,
            {"max_workers": LOCAL_DEPTH},
        )
        runner = RunnerProcess(config)
        try:
            runner.wait_until_serving()
            before = (runner.cpu_seconds(), cpu_seconds(server.pid))
            stamps: list[float] = []
            writer = threading.Thread(target=_write_schedule, args=(server.endpoint_url, stamps))
            began = time.perf_counter()
            writer.start()
            lags, done = _watch(runner, writer, stamps)
            elapsed = time.perf_counter() - began
            after = (runner.cpu_seconds(), cpu_seconds(server.pid))
            finished_at = time.perf_counter()
            writer.join()
        finally:
            runner.stop()
    written = len(stamps)
    figures = _figures(
        delay_ms,
        done=int(done),
        elapsed=elapsed,
        cpu=after[0] - before[0],
        lags=lags,
        behind_s=finished_at - (max(stamps) if stamps else began),
        total=written * (len(REGIONS) - 1),
    )
    figures["source_writes_per_s"] = round(written / max(elapsed, 1e-9), 1)
    figures["dynamodb_local_cpu_share"] = round((after[1] - before[1]) / elapsed, 2)
    return figures


def _watch(
    runner: RunnerProcess, writer: threading.Thread, stamps: list[float]
) -> tuple[list[float], float]:
    """Sample the runner's progress until every write reached both targets (or 30 s after
    the writes ended); the age of the oldest unreplicated write at each sample."""
    lags: list[float] = []
    done, ended = 0.0, None
    targets = len(REGIONS) - 1
    while True:
        time.sleep(0.25)
        done = runner.replicated(REGIONS[0])
        now, made = time.perf_counter(), sorted(stamps)
        behind = int(done) // targets
        if behind < len(made):
            lags.append(1000 * (now - made[behind]))
        elif made:
            lags.append(0.0)
        if not writer.is_alive():
            ended = ended or now
            if done >= len(made) * targets or now - ended > 30:
                return lags, done


def measure() -> dict[str, Any]:
    """Every delay on both sides; the headline figures at 250 ms on the in-memory store."""
    memory, local = {}, {}
    for delay in DELAYS:
        memory[delay] = memory_run(delay)
        print("memory", memory[delay], flush=True)  # a long benchmark: show progress
    updated = memory_run(DELAYS[-1], updates=True)
    print("memory", updated, flush=True)
    for delay in DELAYS:
        local[delay] = local_run(delay)
        print("dynamodb_local", local[delay], flush=True)
    worst = memory[DELAYS[-1]]
    return {
        "hot_shard_rate": RATE,
        "hot_shard_seconds": SECONDS,
        "hot_shard_depth": DEPTH,
        "hot_shard_local_depth": LOCAL_DEPTH,
        "hot_shard_keeps_up_at_250ms": worst["kept_up"],
        "hot_shard_lag_p99_ms_at_250ms": worst["lag_p99_ms"],
        "hot_shard_lag_samples_at_250ms": worst["target_writes"],
        "hot_shard_updates_keeps_up_at_250ms": updated["kept_up"],
        "hot_shard_updates_lag_p99_ms_at_250ms": updated["lag_p99_ms"],
        "hot_shard_memory_updates_at_250ms": updated,
        "hot_shard_memory": list(memory.values()),
        "hot_shard_dynamodb_local": list(local.values()),
        "_samples": {
            **dict.fromkeys(("hot_shard_rate", "hot_shard_seconds", "hot_shard_depth"), 1),
            "hot_shard_local_depth": 1,  # settings
            "hot_shard_keeps_up_at_250ms": 1,  # one run of 60 s
            "hot_shard_lag_p99_ms_at_250ms": worst["target_writes"],  # writes timed
            "hot_shard_lag_samples_at_250ms": 1,
            "hot_shard_updates_keeps_up_at_250ms": 1,
            "hot_shard_updates_lag_p99_ms_at_250ms": updated["target_writes"],
            "hot_shard_memory_updates_at_250ms": 1,
            "hot_shard_memory": len(memory),  # one run per delay
            "hot_shard_dynamodb_local": len(local),
        },
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    report(measure(), "hot_shard.json")


if __name__ == "__main__":
    main()
