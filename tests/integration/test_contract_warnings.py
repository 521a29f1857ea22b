"""Contract violations reach the operator: a WARNING on the runner's stderr (key, region,
what to fix) and the dynamodb_replicator_contract_violations_total counter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.integration.test_observability import metric, scrape
from tests.runner_process import write_config
from tests.support import FIELDS, REGIONS, create_table

US, EU, AP = REGIONS


def test_an_update_keeping_its_timestamp_is_warned_on_stderr_and_counted(
    ddb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Contract", region=region)
    config = write_config(
        tmp_path / "c.toml", ["Contract"], dict.fromkeys(REGIONS, ddb_local.endpoint_url)
    )
    port = free_port()
    script = Path(sys.executable).parent / "dynamodb-replicator"
    process = subprocess.Popen(
        [
            *(str(script), "run", "--config", str(config), "--log-format", "json"),
            *("--metrics-port", str(port), "--worker-id", "contract"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
    reader.start()
    try:
        stamp = str(int(time.time() * 1000))
        key = {"pk": {"S": "kept"}}
        clients[US].put_item(
            TableName="Contract", Item={**key, FIELDS.timestamp: {"N": stamp}, "v": {"S": "a"}}
        )
        clients[US].put_item(  # changed, same __timestamp: the contract is broken
            TableName="Contract", Item={**key, FIELDS.timestamp: {"N": stamp}, "v": {"S": "b"}}
        )
        deadline = time.monotonic() + 60
        while not any("contract violation" in line for line in list(lines)):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        found = [json.loads(line) for line in list(lines) if "contract violation" in line]
        warning = found[0]
        assert warning["level"] == "WARNING" and warning["kind"] == "kept-timestamp"
        assert warning["key"] == key and warning["region"] == US
        assert "kept __timestamp" in warning["message"] and "milliseconds" in warning["message"]
        samples = scrape(port)
        assert (
            metric(
                samples,
                "contract_violations_total",
                table="Contract",
                source=US,
                kind="kept-timestamp",
            )
            >= 1
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
