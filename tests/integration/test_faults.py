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
from tests.runner_process import RunnerProcess, write_config
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
    runners = [RunnerProcess(config, tmp_path / "runner.log", "w1").start()]
    workload = workload_type(clients, table=table, keys=25, seed=seed)
    stop = threading.Event()
    threads = [
        threading.Thread(target=workload.run_region, args=(r, 0, 1_000, 0.01, stop))
        for r in regions
    ]
    try:
        for thread in threads:
            thread.start()
        began = time.monotonic()
        for _ in range(kills):  # SIGKILL at random moments, restart at once
            time.sleep(rng.uniform(1.0, load_seconds / kills))
            runners[-1].kill()
            runners.append(RunnerProcess(config, tmp_path / "runner.log", "w1").start())
        time.sleep(max(0.0, load_seconds - (time.monotonic() - began)))
        stop.set()
        for thread in threads:
            thread.join()
        try:
            seconds = converged(clients, table, workload.expected(), timeout=converge_timeout)
        except AssertionError:
            print((tmp_path / "runner.log").read_text()[-4000:])
            raise
        return {
            "seed": seed,
            "load_seconds": load_seconds,
            "operations": len(workload.events),
            "deletes": sum(e.delete for e in workload.events),
            "kills": kills,
            "converge_seconds": round(seconds, 1),
            "faults": dict(proxy.counts),
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
