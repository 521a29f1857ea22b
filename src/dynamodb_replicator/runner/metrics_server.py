"""Serve metrics to Prometheus: ``GET /metrics`` on a port, from a background thread."""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, MetricsHandler

from dynamodb_replicator.core.errors import ConfigError

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)


class MetricsServer:
    """Serves ``registry`` (collected once per scrape, on the server's thread) at /metrics."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        class Handler(MetricsHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "metrics are at /metrics")
                    return
                try:
                    super().do_GET()  # renders the whole page before it sends a byte
                except Exception:
                    log.exception("metrics collection failed")
                    self.send_error(500, "metrics collection failed")

        Handler.registry = registry
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
