"""A regional outage on DynamoDB Local: three regions behind proxies, the first configured
one goes out. Replication between the other two goes on, also across a runner restart
during the outage; the region catches up when it returns; SIGTERM still exits 0."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.proxy import TcpProxy
from tests.runner_process import RunnerProcess, unique_worker_id, write_config
from tests.support import REGIONS, create_table

US, EU, AP = REGIONS  # us-east-1 is the first configured region
TABLE = "Outage"


def show_logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text()[-4000:] for p in sorted(tmp_path.glob("*.log")))


def poll(condition: Callable[[], bool], timeout: float, why: Callable[[], str]) -> float:
    """Seconds until ``condition`` held; fails with ``why()`` after ``timeout``."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, why()
        time.sleep(0.1)
    return time.monotonic() - began


@pytest.fixture
def proxies(ddb_local: DynamoDBLocal) -> Iterator[dict[str, TcpProxy]]:
    proxies = {region: TcpProxy(ddb_local.port).start() for region in REGIONS}
    yield proxies
    for proxy in proxies.values():
        proxy.stop()


def reachable_metric(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        if line.startswith("dynamodb_replicator_region_reachable{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('region="', 1)[1].split('"', 1)[0]] = float(value)
    return found


def test_replication_goes_on_through_an_outage_and_a_restart(
    ddb_local: DynamoDBLocal,
    proxies: dict[str, TcpProxy],
    runners: list[RunnerProcess],
    tmp_path: Path,
) -> None:
    direct = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in REGIONS}
    for region, client in direct.items():
        create_table(client, TABLE, region=region)
    config = write_config(
        tmp_path / "o.toml",
        [TABLE],
        {region: proxies[region].endpoint_url for region in REGIONS},
        lease_timeout_seconds=5,
    )
    metrics_port = free_port()
    worker = unique_worker_id("outage")  # the same id across the restart, as in a deploy

    def start(name: str) -> RunnerProcess:
        args = ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
        runner = RunnerProcess(config, tmp_path / f"{name}.log", worker, args).start()
        runners.append(runner)
        return runner

    def put(region: str, key: str) -> None:
        item = {"pk": {"S": key}, "__timestamp": {"N": str(int(time.time() * 1000))}}
        direct[region].put_item(TableName=TABLE, Item=item)

    def holds(region: str, *keys: str) -> Callable[[], bool]:
        def check() -> bool:
            return all(
                "Item"
                in direct[region].get_item(
                    TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True
                )
                for key in keys
            )

        return check

    def logs() -> str:
        return show_logs(tmp_path)

    runner = start("before")
    runner.wait_for_leases(3)
    put(EU, "warm")
    poll(holds(US, "warm"), 60, logs)
    poll(holds(AP, "warm"), 60, logs)

    proxies[US].stop()  # connections dropped, new ones refused
    put(US, "from-us")  # the application in the cut-off region goes on writing
    put(EU, "eu-1")
    put(AP, "ap-1")
    poll(holds(AP, "eu-1"), 30, logs)
    poll(holds(EU, "ap-1"), 30, logs)

    assert runner.terminate() == 0  # a deploy, during the outage
    runner = start("restarted")
    poll(lambda: reachable_metric(metrics_port).get(US) == 0.0, 30, logs)
    assert reachable_metric(metrics_port) == {US: 0.0, EU: 1.0, AP: 1.0}
    put(EU, "eu-2")
    put(AP, "ap-2")
    seconds = max(poll(holds(AP, "eu-2"), 30, logs), poll(holds(EU, "ap-2"), 30, logs))
    assert runner.alive(), logs()
    assert seconds < 15, f"took {seconds:.1f} s"
    assert "region unreachable" in (tmp_path / "restarted.log").read_text()
    assert not holds(US, "eu-1")() and not holds(EU, "from-us")()

    proxies[US].start()  # the region returns: it catches up, both ways
    poll(holds(US, "eu-1", "ap-1", "eu-2", "ap-2"), 90, logs)
    poll(holds(EU, "from-us"), 60, logs)
    poll(holds(AP, "from-us"), 60, logs)
    poll(lambda: reachable_metric(metrics_port).get(US) == 1.0, 30, logs)
    put(US, "after")
    poll(holds(EU, "after"), 30, logs)

    began = time.monotonic()
    assert runner.terminate() == 0
    assert time.monotonic() - began < 10, logs()
