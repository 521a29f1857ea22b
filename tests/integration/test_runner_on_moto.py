"""A small sequential smoke test of the runner on moto's server: no DynamoDB Local quirk
(fake region in ARNs, sequence number format) is relied upon."""

from __future__ import annotations

import time
from pathlib import Path

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from tests.moto_server import MotoServer
from tests.runner_process import RunnerProcess, write_config
from tests.support import REGIONS, create_table


def test_sequential_writes_replicate_on_moto(moto: MotoServer, tmp_path: Path) -> None:
    clients = {r: make_client("dynamodb", RegionSpec(r, moto.endpoint_url)) for r in REGIONS}
    for region, client in clients.items():
        create_table(client, "Orders", region=region)
    config = write_config(
        tmp_path / "m.toml", ["Orders"], dict.fromkeys(REGIONS, moto.endpoint_url)
    )
    runner = RunnerProcess(config, tmp_path / "moto.log").start()
    try:
        expected = {}
        for n, (region, client) in enumerate(clients.items()):
            for i in range(3):
                key = f"{region}-{i}"
                client.put_item(
                    TableName="Orders",
                    Item={"pk": {"S": key}, "__timestamp": {"N": str(n * 10 + i)}, "v": {"S": key}},
                )
                expected[key] = key
        first = next(iter(clients.values()))
        first.delete_item(TableName="Orders", Key={"pk": {"S": f"{REGIONS[0]}-0"}})
        del expected[f"{REGIONS[0]}-0"]
        deadline = time.monotonic() + 60
        while True:
            state = {
                region: {
                    i["pk"]["S"]: i["v"]["S"] for i in client.scan(TableName="Orders")["Items"]
                }
                for region, client in clients.items()
            }
            if all(found == expected for found in state.values()):
                break
            assert runner.alive(), (tmp_path / "moto.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"{state} {(tmp_path / 'moto.log').read_text()[-3000:]}"
            )
            time.sleep(0.3)
        assert runner.terminate() == 0
    finally:
        runner.close()
