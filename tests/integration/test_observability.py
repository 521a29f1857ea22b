"""Observability on DynamoDB Local: the conflict log, the Prometheus endpoint and ``status``,
against a real runner process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal, free_port
from tests.proxy import TcpProxy
from tests.runner_process import RunnerProcess, write_config
from tests.support import FIELDS, REGIONS, create_table, scan

US, EU, _ = REGIONS
SECRET = "s3cr3t-attribute-value"
T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Call ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def put(client: Any, table: str, key: str, stamp: int) -> None:
    item = {"pk": {"S": key}, FIELDS.timestamp: {"N": str(stamp)}, "secret": {"S": SECRET}}
    client.put_item(TableName=table, Item=item)


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The runner's metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, raw = series.partition("{")
        labels = frozenset(tuple(part.split("=", 1)) for part in raw.rstrip("}").split(",") if part)
        samples[(name, frozenset((k, v.strip('"')) for k, v in labels))] = float(value)
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((f"dynamodb_replicator_{name}", frozenset(labels.items())), 0.0)


def test_conflict_log_and_metrics_match_what_was_written(
    ddb_local: DynamoDBLocal, runners: list[RunnerProcess], tmp_path: Path
) -> None:
    """Only writes that met another region's version are conflicts (not a put meeting the
    delete of its own version); the lag of an item versioned long ago is by stream time."""
    clients = {r: make_client("dynamodb", RegionSpec(r, ddb_local.endpoint_url)) for r in (US, EU)}
    for region, client in clients.items():
        create_table(client, "Observed", region=region)
    now = int(time.time() * 1000)
    plain, conflicting = 20, 5
    for i in range(plain):
        put(clients[US], "Observed", f"plain-{i}", now + i)
    for i in range(conflicting):  # the same keys in both regions; eu-west-1's are newer
        put(clients[US], "Observed", f"clash-{i}", now)
        put(clients[EU], "Observed", f"clash-{i}", now + 1000)
    deleted = 3
    for i in range(deleted):  # put and deleted in one region: no conflict anywhere
        put(clients[US], "Observed", f"pre-del-{i}", now + i)
        clients[US].delete_item(TableName="Observed", Key={"pk": {"S": f"pre-del-{i}"}})
    # versioned (version-items --timestamp) long ago, written last: the batch's newest write
    put(clients[US], "Observed", "versioned", 1_700_000_000_000)
    plain += 1
    conflicts = tmp_path / "conflicts.jsonl"
    config = write_config(
        tmp_path / "c.toml",
        ["Observed"],
        dict.fromkeys((US, EU), ddb_local.endpoint_url),
        conflict_log=str(conflicts),
    )
    port = free_port()
    runner = RunnerProcess(config, tmp_path / "w.log", extra_args=["--metrics-port", str(port)])
    runners.append(runner.start())

    def counts() -> dict[str, float] | None:
        try:
            samples = scrape(port)
        except OSError:
            return None
        found = {
            "applied us->eu": metric(
                samples, "applied_total", table="Observed", source=US, target=EU
            ),
            "stale us->eu": metric(samples, "stale_total", table="Observed", source=US, target=EU),
            "applied eu->us": metric(
                samples, "applied_total", table="Observed", source=EU, target=US
            ),
            "stale eu->us": metric(samples, "stale_total", table="Observed", source=EU, target=US),
            "lost us->eu": metric(
                samples, "conflicts_total", table="Observed", source=US, target=EU, outcome="lost"
            ),
            "won eu->us": metric(
                samples, "conflicts_total", table="Observed", source=EU, target=US, outcome="won"
            ),
            "leases": metric(
                samples, "shards_owned", table="Observed", source=US, worker=runner.worker_id
            ),
            "lag sum us->eu": metric(
                samples, "batch_lag_seconds_sum", table="Observed", source=US, target=EU
            ),
        }
        return (
            found
            if found["applied us->eu"] + found["stale us->eu"] >= plain + conflicting + 2 * deleted
            and (found["applied eu->us"] >= conflicting)
            else None
        )

    try:
        found = poll(counts, "the runner to replicate everything")
    except AssertionError:
        print((tmp_path / "w.log").read_text()[-3000:])
        raise
    # by stream time (DynamoDB Local truncates it to the minute): well under an hour, not
    # the 3 years since the version's timestamp
    assert 0 < found.pop("lag sum us->eu") < 3600
    assert found == {
        "applied us->eu": plain + deleted,  # the deletes
        "stale us->eu": conflicting + deleted,  # the puts, taken back by their deletes
        "applied eu->us": conflicting,
        "stale eu->us": 0,
        "lost us->eu": conflicting,
        "won eu->us": conflicting,
        "leases": 1,
    }
    assert len(scan(clients[EU], "Observed")) == plain + conflicting

    records = [json.loads(line) for line in conflicts.read_text().splitlines()]
    assert SECRET not in conflicts.read_text()  # keys and versions, no contents by default
    by_outcome = {
        (r["outcome"], r["key"]["pk"]["S"]): r for r in records if r["table"] == "Observed"
    }
    assert len(records) == len(by_outcome) == 2 * conflicting
    for i in range(conflicting):
        lost = by_outcome[("lost", f"clash-{i}")]
        assert (lost["region"], lost["source"], lost["winner"]) == (EU, US, "other")
        assert lost["change"] == {"timestamp": str(now), "origin": US}
        assert lost["other"] == {"timestamp": str(now + 1000), "origin": EU}
        won = by_outcome[("won", f"clash-{i}")]
        assert (won["region"], won["source"], won["winner"]) == (US, EU, "change")
        assert won["change"] == {"timestamp": str(now + 1000), "origin": EU}
        assert won["other"] == {"timestamp": str(now), "origin": US}


def status_command(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "dynamodb-replicator"
    done = subprocess.run(
        [str(executable), "status", "--config", str(config), "--stuck-after", "3", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done


def status(config: Path) -> tuple[int, dict[str, Any]]:
    done = status_command(config, "--json")
    return done.returncode, json.loads(done.stdout)


def pair(report: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        p for p in report["pairs"] if (p["source"], p["target"]) == (source, target)
    ]
    assert len(found) == 1
    return found[0]


def test_status_reports_a_stopped_target_as_stuck_and_recovers(
    ddb_local: DynamoDBLocal, runners: list[RunnerProcess], tmp_path: Path
) -> None:
    proxy = TcpProxy(ddb_local.port).start()
    try:
        endpoints = {US: ddb_local.endpoint_url, EU: proxy.endpoint_url}
        clients = {r: make_client("dynamodb", RegionSpec(r, url)) for r, url in endpoints.items()}
        for region, client in clients.items():
            create_table(client, "Watched", region=region)
        config = write_config(tmp_path / "c.toml", ["Watched"], endpoints, lease_timeout_seconds=3)
        runner = RunnerProcess(config, tmp_path / "w.log").start()
        runners.append(runner)
        runner.wait_for_leases(2)
        stamp = int(time.time() * 1000)
        put(clients[US], "Watched", "before", stamp)

        def healthy() -> dict[str, Any] | None:
            code, report = status(config)
            return report if code == 0 and pair(report, US, EU)["applied"] >= 1 else None

        report = poll(healthy, "every pair to be healthy")
        assert not report["stuck"] and report["regions"][US]["workers"] == [runner.worker_id]
        assert [lease["owner"] for lease in report["regions"][US]["leases"]] == [runner.worker_id]

        proxy.stop()  # eu-west-1 is gone
        for i in range(10):
            put(clients[US], "Watched", f"during-{i}", stamp + 1 + i)

        def stuck() -> dict[str, Any] | None:
            code, report = status(config)
            us_eu = pair(report, US, EU)
            return report if code == 1 and us_eu["stuck"] and us_eu["backlog"] >= 1 else None

        report = poll(stuck, "status to call us-east-1 -> eu-west-1 stuck")
        us_eu = pair(report, US, EU)
        assert any(
            "records waiting beyond its checkpoint, no progress" in reason
            for reason in us_eu["reasons"]
        )
        assert us_eu["last_error"]  # why it is stuck: the unreachable endpoint
        assert pair(report, EU, US)["stuck"]  # its state cannot be read either
        screen = status_command(config)
        assert screen.returncode == 1
        assert f"stuck: Watched {US} -> {EU}: shard" in screen.stdout
        assert "records waiting beyond its checkpoint, no progress" in screen.stdout

        proxy.start()

        def recovered() -> dict[str, Any] | None:
            code, report = status(config)
            return report if code == 0 and pair(report, US, EU)["backlog"] == 0 else None

        report = poll(recovered, "status to recover", timeout=90)
        assert pair(report, US, EU)["applied"] >= 11
        assert len(scan(clients[EU], "Watched")) == 11
    except AssertionError:
        print((tmp_path / "w.log").read_text()[-4000:])
        raise
    finally:
        proxy.stop()
