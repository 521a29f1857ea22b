"""boto3 clients: one place that creates them, with the AWS named profile to use.

``use_profile`` (the CLI's ``--profile``) sets the profile every client of the process is
made with; ``make_client(..., profile=...)`` overrides it for one client.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ProfileNotFound

from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec

__all__ = ["make_client", "use_profile"]

_profile: list[str | None] = [None]  # the process's named profile (None: the default chain)


def use_profile(name: str | None) -> None:
    """Make every client of this process use the AWS named profile ``name`` (None: the
    default credential chain, AWS_PROFILE included). Raises ConfigError when unknown."""
    if name is not None and name not in botocore.session.Session().available_profiles:
        raise ConfigError(f"AWS profile {name!r} not found in ~/.aws/config or ~/.aws/credentials")
    _profile[0] = name


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """The service-model files, parsed once per process (read-only after loading)."""
    return botocore.loaders.create_loader()


def make_client(
    service: str, region: RegionSpec, *, pool: int = 32, profile: str | None = None
) -> Any:
    """A low-level client; retries are ours (``retry.py``), so botocore makes one attempt.
    ``profile``: an AWS named profile (default: the one ``use_profile`` set)."""
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
    name = profile or _profile[0]
    try:
        session = boto3.session.Session(botocore_session=core, profile_name=name)
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {name!r} not found") from None
    return session.client(
        service, region_name=region.name, endpoint_url=region.endpoint_url, config=config
    )
