"""A delaying TCP proxy: a cross-region round trip on loopback.

Every byte the client sends reaches the server ``delay_ms`` later (a delay line per
connection, so a request split over several segments is delayed once, not per segment);
answers come back at once. Each call on a kept-alive connection therefore takes
``delay_ms`` longer, as it would across regions. It runs in a process of its own (asyncio,
one thread), so relaying hundreds of calls per second does not take the GIL from the
process being measured.

    python -m benchmarks.delay_proxy --upstream 8000 --port 8100 --delay-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

from dynamodb_replicator.testing.local import free_port

__all__ = ["DelayProxy", "serve"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await line.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(release())
    try:
        while data := await reader.read(65536):
            line.put_nowait((time.monotonic() + delay, data))
    finally:
        line.put_nowait((0.0, b""))
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await sender
        with contextlib.suppress(OSError):
            writer.close()


async def serve(upstream: int, port: int, delay_ms: float) -> None:
    """Relay 127.0.0.1:port to 127.0.0.1:upstream until cancelled."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            _pipe(client_r, server_w, delay_ms / 1000),
            _pipe(server_r, client_w, 0.0),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


class DelayProxy:
    """The proxy as a child process; a context manager."""

    def __init__(self, upstream_port: int, delay_ms: float) -> None:
        self.upstream_port, self.delay_ms = upstream_port, delay_ms
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DelayProxy:
        command = [sys.executable, "-m", "benchmarks.delay_proxy"]
        args = ["--upstream", str(self.upstream_port), "--port", str(self.port)]
        self.process = subprocess.Popen([*command, *args, "--delay-ms", str(self.delay_ms)])
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the delay proxy did not start")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url, timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # DynamoDB Local answered through the proxy
        except OSError:
            return False

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream, args.port, args.delay_ms))


if __name__ == "__main__":
    main()
