"""Serve metrics to Prometheus: ``GET /metrics`` on a port, from a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.observe.metrics import Family, render_prometheus

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """``collect`` is called once per scrape, on the server's thread."""

    def __init__(self, host: str, port: int, collect: Callable[[], Iterable[Family]]) -> None:
        collect_families = collect

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "metrics are at /metrics")
                    return
                try:
                    body = render_prometheus(collect_families()).encode("utf-8")
                except Exception:
                    log.exception("metrics collection failed")
                    self.send_error(500, "metrics collection failed")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per scrape would drown the runner's own log

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("serving metrics", extra={"port": self.port, "path": "/metrics"})
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
