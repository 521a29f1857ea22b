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
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.faults import FaultProxy
from tests.runner_process import RunnerProcess, unique_worker_id, write_config
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
    converge_timeout: float = 150,
    regions: Sequence[str] = REGIONS,
    workload_type: type[Workload] = Workload,
    config_extra: str = "",
    converged: Callable[..., float] = wait_until_converged,
) -> dict[str, object]:
    """Load all regions for ``load_seconds`` while the runner (behind the fault proxy) is
    killed ``kills`` times; then wait until every region holds the expected winners
    (``converged``: what every region must hold; ``config_extra``: appended to the
    runner's config)."""
    rng = random.Random(seed)
    proxy = FaultProxy(ddb_local.port, seed=seed).start()
    clients: dict[str, Any] = {
        r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in regions
    }
    for region, client in clients.items():
        create_table(client, table, region=region)
    config = write_config(
        tmp_path / "faults.toml",
        [table],
        dict.fromkeys(regions, proxy.endpoint_url),
        lease_timeout_seconds=5,
    )
    config.write_text(config.read_text() + config_extra)
    worker = unique_worker_id("faults")

    def start() -> RunnerProcess:
        # The same worker id after each kill, as a supervisor restarts a process: it takes
        # over its claim and leases once they expire. A log of its own for each runner.
        runner = RunnerProcess(config, tmp_path / f"runner-{len(runners)}.log", worker)
        runners.append(runner.start())
        return runner

    runners: list[RunnerProcess] = []
    start()
    workload = workload_type(clients, table=table, keys=25, seed=seed)
    stop = threading.Event()
    threads = [
        threading.Thread(target=workload.run_region, args=(r, 0, 1_000, pause, stop))
        for r in regions
    ]
    try:
        for thread in threads:
            thread.start()
        began = time.monotonic()
        for _ in range(kills):  # SIGKILL at random moments of a runner at work
            leases = runners[-1].wait_for_leases(3, timeout=120)
            kill_at = time.monotonic() + rng.uniform(0.5, max(1.0, load_seconds / kills - 5))
            while time.monotonic() < kill_at:  # writes go on; the runner replicates them
                assert runners[-1].alive(), runners[-1].tail()
                time.sleep(0.1)
            assert leases and runners[-1].alive()  # it holds its shards when it dies
            runners[-1].kill()
            start()
        runners[-1].wait_for_leases(3, timeout=120)
        stop.wait(max(0.0, load_seconds - (time.monotonic() - began)))
        stop.set()
        for thread in threads:
            thread.join()
        try:
            seconds = converged(clients, table, workload.expected(), timeout=converge_timeout)
        except AssertionError:
            print(runners[-1].tail())
            raise
        return {
            "seed": seed,
            "load_seconds": load_seconds,
            "operations": len(workload.events),
            "deletes": sum(e.delete for e in workload.events),
            "kills": kills,
            "runners_that_took_leases": sum(bool(r.events("shard leased")) for r in runners),
            "converge_seconds": round(seconds, 1),
            "faults": dict(proxy.counts),
            # Met by the proxy, not injected: clients gone (counted, not printed), and any
            # other error (printed once a kind as well).
            "client_disconnects": dict(proxy.disconnects),
            "proxy_errors": dict(proxy.unexpected),
        }
    finally:
        stop.set()
        for runner in runners:
            runner.close()
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
