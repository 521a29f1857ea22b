"""The config of the fault runs (``make soak``, tests/integration/test_faults.py) against
their fault mix (tests/faults.py)."""

from __future__ import annotations

from pathlib import Path

from dynamodb_replicator.runner.config import check_fencing, load_config
from tests.faults import DELAY_MAX_SECONDS, SLOW_SECONDS, fault_config
from tests.support import REGIONS


def test_a_fault_run_cuts_a_slow_answer_at_half_a_second_and_waits_a_lost_one_as_long(
    tmp_path: Path,
) -> None:
    """A slow answer (1.5 s) is cut by the request timeout and its write waited out for
    the request lifetime: 0.5 s each, not the 1.0 s the 5 s lease derives (every slow
    answer held its key's chain, and so its page, a second). An injected delay (up to
    0.2 s) stays well inside it, and the config still fences by time."""
    config = load_config(fault_config(tmp_path / "f.toml", ["Soak"], "http://127.0.0.1:1", REGIONS))
    check_fencing(config)  # the lifetime is shorter than the lease margin
    assert config.lease_timeout_seconds == 5.0
    assert config.request_timeout == config.request_lifetime == 0.5
    assert 2 * DELAY_MAX_SECONDS < config.request_timeout < SLOW_SECONDS
