"""Run ``dynamodb-replicator run`` as a real child process for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


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
    """One runner process; its log goes to a file the test can show on failure."""

    def __init__(
        self, config: Path, log: Path, worker_id: str, extra_args: Sequence[str] = ()
    ) -> None:
        self.config, self.log, self.worker_id = config, log, worker_id
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
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()
