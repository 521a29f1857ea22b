"""The long fault-injection run: ``make soak`` (SOAK_MINUTES, default 15; FAULT_SEED).

Writers load three regions for the whole duration while every runner call goes through
the fault-injecting proxy and the runner is killed with SIGKILL about every 20 seconds;
then it waits until every region holds exactly the expected winner of every key, and
prints a summary. Exit 0 when converged.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.integration.test_faults import run_with_faults


def main() -> int:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "soak")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "soak")
    minutes = float(os.environ.get("SOAK_MINUTES", "15"))
    seed = int(os.environ.get("FAULT_SEED", "1"))
    with DynamoDBLocal() as server, tempfile.TemporaryDirectory() as directory:
        summary = run_with_faults(
            server,
            Path(directory),
            "Soak",
            seed=seed,
            load_seconds=minutes * 60,
            kills=max(1, int(minutes * 3)),
            pause=0.05,  # ~50 writes/s in all: DynamoDB Local slows as its streams grow
            converge_timeout=900,
        )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
