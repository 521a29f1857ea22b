"""The long fault-injection run: ``make soak`` (SOAK_MINUTES, default 15; FAULT_SEED;
SOAK_PAUSE, each writer's pause between writes, default 0.05 s).

Writers load three regions for the whole duration while every runner call goes through
the fault-injecting proxy and the runner is killed with SIGKILL about every 20 seconds;
then it waits until every region holds exactly the expected winner of every key, and
prints a summary. Exit 0 when converged. When it fails, its directory (the runners' logs,
``runner-N.log``, and their config) is kept and named on stderr.
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
    # ~50 writes/s in all by default: DynamoDB Local slows as its streams grow.
    pause = float(os.environ.get("SOAK_PAUSE", "0.05"))
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
                pause=pause,
                converge_timeout=900,
            )
    except BaseException:
        # The runners' logs say why (late renewals, deadline misses): kept for reading.
        print(f"soak failed: runner logs kept in {directory}", file=sys.stderr)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
