"""A runner's start makes one botocore session per region, not one per client: each costs
about as much CPU as its client (botocore registers its event handlers anew), and a runner
restarted on a busy machine spent seconds of its restart making 27 of them."""

from __future__ import annotations

import threading
from typing import Any

import botocore.session
import pytest

from dynamodb_replicator.runner.config import parse_config
from dynamodb_replicator.runner.regions import Region

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


def test_the_clients_of_a_region_share_one_session_per_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    config = parse_config(
        {
            "tables": ["Orders"],
            "lease_timeout_seconds": 5,
            "regions": [{"name": r, "endpoint_url": "http://127.0.0.1:9"} for r in REGIONS],
        }
    )
    made: list[Any] = []
    real = botocore.session.get_session

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(botocore.session, "get_session", counted)
    region = Region.connect(config.regions[0], config, threading.Event(), None)
    try:
        # Its streams, state, parking and lease clients, and a writer into every region.
        assert len(made) == len(REGIONS)
    finally:
        region.replicator.close()
