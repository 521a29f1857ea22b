"""Run ``dynamodb-replicator run`` as a real child process for tests."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Worker ids unique within the test session: the tests of a module share one DynamoDB Local
# (and its state table), and a worker id's claim outlives a runner killed with SIGKILL.
_SERIAL = itertools.count(1)


def unique_worker_id(name: str = "w") -> str:
    """``name`` plus a number no other runner of this session has used."""
    return f"{name}-{os.getpid()}-{next(_SERIAL)}"


def write_config(
    path: Path,
    tables: Sequence[str],
    regions: dict[str, str],
    **options: object,
) -> Path:
    lines = [f"tables = [{', '.join(repr(t).replace(chr(39), chr(34)) for t in tables)}]"]
    for key, value in options.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    for name, endpoint in regions.items():
        lines += ["[[regions]]", f'name = "{name}"', f'endpoint_url = "{endpoint}"']
    path.write_text("\n".join(lines) + "\n")
    return path


class RunnerProcess:
    """One runner process; its log goes to a file the test can read and show on failure.

    ``worker_id`` None: a fresh one (see ``unique_worker_id``)."""

    def __init__(
        self,
        config: Path,
        log: Path,
        worker_id: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config, self.log = config, log
        self.worker_id = worker_id or unique_worker_id(log.stem)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RunnerProcess:
        executable = Path(sys.executable).parent / "dynamodb-replicator"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(executable),
                    "run",
                    "--config",
                    str(self.config),
                    "--worker-id",
                    self.worker_id,
                    "--log-format",
                    "json",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=log,
                env=dict(os.environ),
            )
        return self

    # -- what the runner says about itself --------------------------------------------------
    def events(self, message: str = "", **fields: object) -> list[dict[str, Any]]:
        """The JSON log events of this runner's worker id whose message starts with
        ``message`` and whose fields equal ``fields``."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a traceback or other plain text
            if not isinstance(event, dict) or not str(event.get("message", "")).startswith(message):
                continue
            if event.get("worker", self.worker_id) != self.worker_id:
                continue  # another runner appending to the same file
            if all(event.get(k) == v for k, v in fields.items()):
                found.append(event)
        return found

    def wait_for(
        self, message: str, count: int = 1, timeout: float = 120.0, **fields: object
    ) -> list[dict[str, Any]]:
        """Wait until the log holds ``count`` events like ``events(message, **fields)``;
        fail with the log's tail if the runner exits or ``timeout`` passes first. (On the
        shared 2-core machine a runner's startup alone has taken 30 s under load.)"""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(message, **fields)
            if len(found) >= count:
                return found
            assert self.alive(), f"runner exited before {message!r}:\n{self.tail()}"
            assert time.monotonic() < deadline, (
                f"{len(found)} of {count} {message!r} after {timeout} s:\n{self.tail()}"
            )
            time.sleep(0.1)

    def wait_for_leases(self, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Wait until this runner has taken ``count`` shard leases."""
        return self.wait_for("shard leased", count, timeout)

    def totals(self, port: int) -> dict[str, float]:
        """The runner's Prometheus metrics on ``port``, each summed over its labels
        (without the ``dynamodb_replicator_`` prefix); empty while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return {}
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("dynamodb_replicator_"):
                series, value = line.rsplit(" ", 1)
                name = series.partition("{")[0].removeprefix("dynamodb_replicator_")
                found[name] = found.get(name, 0.0) + float(value)
        return found

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # -- stopping -------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        """SIGTERM (the runner releases its leases and its worker id), SIGKILL if that
        does not end it within seconds."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
