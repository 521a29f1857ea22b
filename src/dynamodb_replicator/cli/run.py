"""``dynamodb-replicator run --config FILE``: replicate in the foreground until signalled."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.metrics_server import MetricsServer
from dynamodb_replicator.runner.runner import Runner

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    parser = commands.add_parser("run", help="run the standalone replicator")
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--worker-id", help="name of this worker in leases (default: host-pid)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="JSON lines, or short text lines (auto: text on a terminal)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port at /metrics (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        help="address to serve metrics on (default: all interfaces)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    configure(
        args.log_level, json_format={"auto": None, "json": True, "text": False}[args.log_format]
    )
    config = load_config(args.config)
    runner = Runner(config, worker_id=args.worker_id, config_path=args.config)
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(number).name})
        runner.stop_soon()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.start()  # config errors surface here, before anything is replicated
    server = None
    if args.metrics_port is not None:
        registry = runner.metrics.registry
        server = MetricsServer(args.metrics_host, args.metrics_port, registry).start()
    try:
        runner.run(stop)
    finally:
        if server is not None:
            server.close()
    return 0
