"""Convergence while the network misbehaves and the runner is killed at random moments.

Every runner call goes through the fault-injecting proxy (tests/faults.py); writers in all
three regions write directly. Replay a failure with FAULT_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.aws.lean import make_lean_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.faults import FaultProxy, FaultRates, fault_config
from tests.soak_report import Drain, Successors, log_digest
from tests.support import REGIONS, create_table
from tests.workload import Workload, wait_until_converged

SEED = int(os.environ.get("FAULT_SEED", "20261126"))
LOAD_SECONDS = float(os.environ.get("FAULT_LOAD_SECONDS", "15"))
KILLS = int(os.environ.get("FAULT_KILLS", "3"))


def run_with_faults(
    ddb_local: DynamoDBLocal,
    tmp_path: Path,
    table: str,
    *,
    seed: int = SEED,
    load_seconds: float = LOAD_SECONDS,
    kills: int = KILLS,
    pause: float = 0.01,
    rate: float | None = None,
    converge_timeout: float = 150,
    regions: Sequence[str] = REGIONS,
    workload_type: type[Workload] = Workload,
    config_extra: str = "",
    converged: Callable[..., float] = wait_until_converged,
    rates: FaultRates | None = None,
    observe: bool = False,
    lean_writers: bool = False,
) -> dict[str, object]:
    """Load all regions for ``load_seconds`` while the runner (behind the fault proxy) is
    killed ``kills`` times; then wait until every region holds the expected winners
    (``converged``: what every region must hold; ``config_extra``: appended to the
    runner's config). Each region's writer pauses ``pause`` s between writes, or with
    ``rate``, the writers make that many writes/s in all (``lean_writers``: on the lean
    transport). ``rates``: the fault mix.
    ``observe``: the summary also says where the recovery time went (tests/soak_report.py:
    the backlog when the load stopped, the drain rate after it, the runners' logs)."""
    rng = random.Random(seed)
    proxy = FaultProxy(ddb_local.port, seed=seed, rates=rates).start()
    clients: dict[str, Any] = {
        r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in regions
    }
    for region, client in clients.items():
        create_table(client, table, region=region)
    config = fault_config(tmp_path / "faults.toml", [table], proxy.endpoint_url, regions)
    config.write_text(config.read_text() + config_extra)
    runners = Successors(config, tmp_path, metrics=observe)
    runners.start()
    # With ``lean_writers``, the writers on the runner's lean transport: a quarter of
    # boto3's CPU per write, so that they reach the rate asked for on a busy 2-core machine
    # (its errors are botocore's generic ClientError: the plain Workload catches none).
    make = make_lean_client if lean_writers else make_client
    writers = {r: make("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in regions}
    workload = workload_type(writers, table=table, keys=25, seed=seed)
    stop = threading.Event()
    threads = [
        threading.Thread(target=workload.run_region, args=(r, 0, 1_000, pause, stop))
        if rate is None
        else threading.Thread(target=workload.run_paced, args=(r, rate / len(regions), stop))
        for r in regions
    ]
    try:
        for thread in threads:
            thread.start()
        began = time.monotonic()
        for _ in range(kills):  # SIGKILL at random moments of a runner at work
            leases = runners.last.wait_for_leases(3, timeout=120)
            kill_at = time.monotonic() + rng.uniform(0.5, max(1.0, load_seconds / kills - 5))
            while time.monotonic() < kill_at:  # writes go on; the runner replicates them
                assert runners.last.alive(), runners.last.tail()
                time.sleep(0.1)
            assert leases and runners.last.alive()  # it holds its shards when it dies
            runners.kill()
            runners.start()
        runners.last.wait_for_leases(3, timeout=120)
        stop.wait(max(0.0, load_seconds - (time.monotonic() - began)))
        stop.set()
        for thread in threads:
            thread.join()
        loaded = time.monotonic() - began
        watch = Drain(runners, table, ddb_local.endpoint_url, regions) if observe else None
        try:
            seconds = converged(clients, table, workload.expected(), timeout=converge_timeout)
        except AssertionError:
            print(runners.last.tail())
            raise
        summary: dict[str, object] = {
            "seed": seed,
            "load_seconds": load_seconds,
            "operations": len(workload.events),
            "deletes": sum(e.delete for e in workload.events),
            "kills": kills,
            "runners_that_took_leases": sum(bool(r.events("shard leased")) for r in runners.all),
            "converge_seconds": round(seconds, 1),
            "faults": dict(proxy.counts),
            # Met by the proxy, not injected: clients gone (counted, not printed), and any
            # other error (printed once a kind as well).
            "client_disconnects": dict(proxy.disconnects),
            "proxy_errors": dict(proxy.unexpected),
        }
        if watch is not None:
            summary |= {
                "load_phase_seconds": round(loaded, 1),
                "writes_per_s": round(len(workload.events) / loaded, 1),
                **watch.report(seconds),
                "faults_by_operation": proxy.by_operation(),
                **log_digest([r.log for r in runners.all], runners.killed_at),
            }
        return summary
    finally:
        stop.set()
        runners.close()
        proxy.stop()


def test_converges_under_network_faults_and_kills(ddb_local: DynamoDBLocal, tmp_path: Path) -> None:
    summary = run_with_faults(ddb_local, tmp_path, "Faulty")
    print(summary)
    faults = summary["faults"]
    assert isinstance(faults, dict)
    injected = sum(v for k, v in faults.items() if k != "none")
    assert injected >= 50, summary  # the faults really happened
    assert {"server_error", "throttle", "drop_after"} <= set(faults), summary
    assert isinstance(summary["operations"], int) and summary["operations"] >= 1000, summary
    assert summary["runners_that_took_leases"] == KILLS + 1, summary  # each kill hit a worker
