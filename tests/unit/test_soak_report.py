"""What the soak's summary reads from the runners' logs (tests/soak_report.py): failures
by kind, deadline misses, page-size halvings and each restart's phases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.soak_report import failure_kind, log_digest

KILLED = 1_796_217_290.0  # epoch seconds of the kill


def at(seconds: float) -> str:
    """The log's time of ``KILLED + seconds`` (to the millisecond, UTC)."""
    return datetime.fromtimestamp(KILLED + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log(path: Path, *events: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "Traceback: not JSON\n")
    return path


def test_failures_are_told_apart_by_the_reason_they_log() -> None:
    assert failure_kind("no time left to start this write; it is left for a retry") == "deadline"
    assert failure_kind("PutItem on T in r: ProvisionedThroughputExceededException: x") == (
        "throttled"
    )
    assert failure_kind("GetRecords in r: ThrottlingException: injected") == "throttled"
    assert failure_kind("PutItem on T in r: InternalServerError: injected") == "server_error"
    assert failure_kind('endpoint unreachable: Connect timeout on endpoint URL: "h"') == (
        "connect_timeout"
    )
    assert failure_kind('endpoint unreachable: Read timeout on endpoint URL: "h"') == (
        "read_timeout"
    )
    assert failure_kind("Connection was closed before we received a valid response") == ("dropped")
    assert failure_kind("ValidationException: too big") == "other"


def test_a_restart_is_split_into_its_phases_from_the_kill(tmp_path: Path) -> None:
    first = log(tmp_path / "runner-0.log", {"time": at(-30), "message": "runner started"})
    started = {
        "time": at(6.5),
        "message": "runner started",
        "checks_s": 2.0,
        "clients_s": 1.0,
        "claim_s": 1.5,
    }
    second = log(
        tmp_path / "runner-1.log",
        started,
        {"time": at(7.0), "message": "shard leased"},
        {"time": at(8.0), "message": "write failed", "reason": "no time left to start"},
        {"time": at(8.0), "message": "write failed", "reason": "x: InternalServerError: y"},
        {"time": at(8.1), "message": "page size halved: a page ran out of time"},
        {
            "time": at(8.2),
            "message": "replication to these targets waits for a retry (x)",
            "reason": "no time left to start this write",
        },
        {"time": at(9.5), "message": "shard leased"},
    )
    digest = log_digest([first, second], [KILLED])
    assert digest["deadline_misses"] == {"writes": 1, "pages": 1}
    assert digest["page_size_halvings"] == 1
    assert digest["writes_given_up"] == {"deadline": 1, "server_error": 1}
    restarts = digest["restarts"]
    assert restarts["count"] == 1
    # Started 6.5 s after the kill, 4.5 s of it in start(): 2 s before start() began.
    assert restarts["process"] == {"mean_s": 2.0, "max_s": 2.0}
    assert restarts["claim"] == {"mean_s": 1.5, "max_s": 1.5}
    assert restarts["leases"] == {"mean_s": 3.0, "max_s": 3.0}
    assert restarts["total"] == {"mean_s": 9.5, "max_s": 9.5}
