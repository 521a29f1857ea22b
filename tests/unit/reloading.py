"""What the reload tests share: a config file that a test rewrites, and the real Runner
reading it, over regions a test connects (fakes or in-memory state tables)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.runner.config import RunnerConfig
from dynamodb_replicator.runner.preflight import Checked, Checks
from dynamodb_replicator.runner.regions import Region
from dynamodb_replicator.runner.runner import Runner
from dynamodb_replicator.testing.clock import ManualClock

from .test_runner_outage import CONFIG, NAMES, SCHEMA


def rewrite(
    path: Path,
    regions: Sequence[str] = NAMES,
    *,
    endpoints: Mapping[str, str] | None = None,
    extra: str = "",
) -> None:
    """The config file: table Orders, ``regions`` (with an ``endpoints`` entry, that
    endpoint), ``extra`` top-level keys. Its mtime moves on a second, so that a reload sees
    it edited however coarse the file system's clock is."""
    text = 'tables = ["Orders"]\n' + extra
    for name in regions:
        text += f'[[regions]]\nname = "{name}"\n'
        if endpoints and name in endpoints:
            text += f'endpoint_url = "{endpoints[name]}"\n'
    stamp = (os.stat(path).st_mtime_ns if path.exists() else 0) + 1_000_000_000
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


def reloading_runner(
    path: Path, clock: ManualClock, connect: Callable[[RegionSpec], Region]
) -> Runner:
    """The Runner as worker ``w`` on the test config, reloading from ``path``; its start-up
    checks find every configured region's table with the test schema."""

    def check_all(config: RunnerConfig) -> Checked:
        return Checked(dict.fromkeys((s.name for s in config.regions), SCHEMA))

    runner = Runner(
        CONFIG,
        worker_id="w",
        clock=clock,
        config_path=str(path),
        connect=lambda spec, *_: connect(spec),
        checks=Checks(all=check_all),
    )
    runner.regions = runner._regions(CONFIG)
    return runner
