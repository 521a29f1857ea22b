"""``dynamodb-replicator run --config FILE``: replicate in the foreground until signalled."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from typing import Any

from dynamodb_replicator.cli.options import add_command
from dynamodb_replicator.cli.signals import Signals
from dynamodb_replicator.observe.logs import configure
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.metrics_server import MetricsServer
from dynamodb_replicator.runner.runner import Runner

__all__ = ["register"]

log = logging.getLogger(__name__)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def register(commands: Any) -> None:
    """Add the ``run`` command."""
    parser = add_command(
        commands,
        "run",
        help="run the standalone replicator in the foreground until stopped",
        examples=[
            "--config replicator.toml",
            "--config replicator.toml --worker-id host-a --metrics-port 9108",
            "--config replicator.toml --log-level DEBUG --log-format text",
        ],
        run=run,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="name of this worker in leases, unique among running workers (default: host-pid)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="least severe log level shown (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default="auto",
        help="JSON lines, or short text lines (auto: text on a terminal)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="ADDRESS",
        help="address to serve metrics on (default: all interfaces)",
    )


# Container objects allocated (less those freed) before a young collection: a page of
# 1,000 records makes about 15,000 dicts that live as long as the page, and at CPython's
# 700 every page went through a score of collections that each found them all alive.
YOUNG_COLLECTION_THRESHOLD = 20_000


# How long a thread holds the GIL before one that waits for it may take it (CPython's
# default: 5 ms). The runner's threads each make a short burst of Python work between two
# waits on a socket; at CPython's default, a hot shard at 250 ms per call (hundreds of
# threads waking at once) spent most of its CPU handing the GIL back and forth in the
# kernel: 0.67 ms of CPU per target write, 22 s of system time in 30 s, and it fell behind;
# at 20 ms, 0.20 ms per target write, and it kept up (docs/benchmarks.md).
SWITCH_INTERVAL_SECONDS = 0.02


def tune_interpreter() -> None:
    """The interpreter for a long-running replicator: the collector (``tune_collector``)
    and the GIL's switch interval (``SWITCH_INTERVAL_SECONDS``)."""
    tune_collector()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def tune_collector() -> None:
    """The garbage collector for a long-running replicator (``perf``: about a tenth of
    the runner's CPU in a drain went to it; docs/benchmarks.md). What startup made
    (botocore's sessions, service models and clients: most of the process's objects)
    lives as long as the process: collected once, then frozen out of every later scan
    (a reload's replaced clients, made at startup, are then never freed: once, not per
    reload). Young collections come after ``YOUNG_COLLECTION_THRESHOLD`` allocations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def run(args: argparse.Namespace) -> int:
    """Check the configuration, then replicate until SIGTERM or SIGINT."""
    configure(
        args.log_level, json_format={"auto": None, "json": True, "text": False}[args.log_format]
    )
    config = load_config(args.config)
    runner = Runner(config, worker_id=args.worker_id, config_path=args.config)
    stop = threading.Event()

    def on_signal(number: int) -> None:  # on the signals' thread (cli/signals.py)
        log.info("stopping", extra={"signal": signal.Signals(number).name})
        runner.stop_soon()
        stop.set()

    with Signals((signal.SIGTERM, signal.SIGINT), on_signal):
        runner.start()  # config errors surface here, before anything is replicated
        tune_interpreter()
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
