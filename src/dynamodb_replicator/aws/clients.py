"""boto3 clients, created once per region and service and reused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

__all__ = ["RegionSpec", "make_client"]


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """A region name and, for DynamoDB Local or a proxy, the endpoint to use instead of AWS."""

    name: str
    endpoint_url: str | None = None


def make_client(service: str, region: RegionSpec, *, pool: int = 32) -> Any:
    """A low-level client; retries are ours (``retry.py``), so botocore makes one attempt."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=2,
        read_timeout=20,
        max_pool_connections=pool,
    )
    session = boto3.session.Session()
    return session.client(
        service, region_name=region.name, endpoint_url=region.endpoint_url, config=config
    )
