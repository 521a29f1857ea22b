"""boto3 clients, created once per region and service and reused."""

from __future__ import annotations

import functools
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from dynamodb_replicator.core.model import RegionSpec

__all__ = ["make_client"]


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """The service-model files, parsed once per process (read-only after loading)."""
    return botocore.loaders.create_loader()


def make_client(service: str, region: RegionSpec, *, pool: int = 32) -> Any:
    """A low-level client; retries are ours (``retry.py``), so botocore makes one attempt."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=2,
        read_timeout=20,
        max_pool_connections=pool,
        parameter_validation=False,  # the server validates; this saves client CPU per call
    )
    # A session per client (sessions are not thread-safe), one loader for all of them: each
    # loader holds its own copy of the service models, ~8 MB per client otherwise.
    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    session = boto3.session.Session(botocore_session=core)
    return session.client(
        service, region_name=region.name, endpoint_url=region.endpoint_url, config=config
    )
