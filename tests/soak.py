"""The long fault-injection run: ``make soak`` (SOAK_MINUTES, default 15; FAULT_SEED;
SOAK_RATE, the writes per second of the three writers in all, default 200; SOAK_PAUSE,
when set, each writer pauses that long between writes instead, as fast as the server
answers with 0; SOAK_KEEP, when set, keeps the runners' logs of a run that converged).

Writers load three regions for the whole duration while every runner call goes through
the fault-injecting proxy and the runner is killed with SIGKILL about every 20 seconds;
then it waits until every region holds exactly the expected winner of every key, and
prints a summary: ``converge_seconds`` (after the load stopped), the write rate reached,
and where the recovery time went (tests/soak_report.py): the target writes not applied
when the load stopped (``backlog_at_stop``), the target writes per second after it
(``drain_writes_per_s``, and per 10-s window), the runners' counters, the faults per
operation, deadline misses, page-size halvings, what gave up by kind, each restart's
phases, and the load average. Exit 0 when converged. When it fails, its directory (the
runners' logs, ``runner-N.log``, and their config) is kept and named on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_faults import run_with_faults


def main() -> int:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    minutes = float(os.environ.get("SOAK_MINUTES", "15"))
    seed = int(os.environ.get("FAULT_SEED", "1"))
    # Issue 23's load: three writers, about 200 writes/s in all.
    rate = float(os.environ.get("SOAK_RATE", "200"))
    pause = os.environ.get("SOAK_PAUSE")
    load_at_start = os.getloadavg()
    directory = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        with DynamoDBLocal() as server:
            summary = run_with_faults(
                server,
                directory,
                "Soak",
                seed=seed,
                load_seconds=minutes * 60,
                kills=max(1, int(minutes * 3)),
                pause=float(pause or 0),
                rate=None if pause is not None else rate,
                converge_timeout=900,
                observe=True,
                lean_writers=True,
            )
    except BaseException:
        # The runners' logs say why (late renewals, deadline misses): kept for reading.
        print(f"soak failed: runner logs kept in {directory}", file=sys.stderr)
        raise
    if os.environ.get("SOAK_KEEP"):
        print(f"runner logs kept in {directory}", file=sys.stderr)
    else:
        shutil.rmtree(directory, ignore_errors=True)
    load = summary.get("load_average")
    if isinstance(load, dict):
        load["at_start"] = [round(v, 1) for v in load_at_start]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
