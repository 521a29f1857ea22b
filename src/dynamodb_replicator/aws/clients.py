"""boto3 clients: one place that creates them, with the AWS named profile to use and, for a
region in another account, the role to assume.

``use_profile`` (the CLI's ``--profile``) sets the profile every client of the process is
made with; ``make_client(..., profile=...)`` overrides it for one client. A region with a
``role`` gets clients signed with that role's temporary credentials: botocore's
AssumeRoleCredentialFetcher behind DeferredRefreshableCredentials. The profile's (or the
default chain's) credentials call STS in the region itself when a first call needs them,
and again before they expire, so a runner that runs for weeks never holds stale keys.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import ClientError, NoCredentialsError, ProfileNotFound

from dynamodb_replicator.aws.errors import AssumeRoleFailed
from dynamodb_replicator.core import defaults
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.roles import RoleSpec

__all__ = ["make_client", "region_session", "session_client", "use_profile"]

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


def _config(pool: int, timeout: float) -> Config:
    """One attempt per call (retries are ours, each checked against the caller's deadline),
    and ``timeout`` split into connect and read timeouts. The lean transport keeps a call's
    request within their sum of its start (``aws.http``: one send-by instant); botocore's
    urllib3 does not: each address the name resolves to, the TLS handshake and the send get
    the connect timeout each, the resolution and a credentials refresh none
    (docs/concepts/guarantees.md, "Timing and clocks")."""
    connect = timeout * defaults.REQUEST_CONNECT_SHARE
    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect,
        read_timeout=timeout - connect,
        max_pool_connections=pool,
        parameter_validation=False,  # the server validates; this saves client CPU per call
    )


class _Assumed(CredentialProvider):  # type: ignore[misc]
    """The one credential source of a region's session: its role's refreshing credentials."""

    METHOD = "assume-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def _session(
    name: str | None, role: DeferredRefreshableCredentials | None = None
) -> boto3.session.Session:
    # A session per client (sessions are not thread-safe), one loader for all of them: each
    # loader holds its own copy of the service models, ~8 MB per client otherwise.
    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    if role is not None:
        core.register_component("credential_provider", CredentialResolver([_Assumed(role)]))
    try:
        return boto3.session.Session(botocore_session=core, profile_name=name)
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {name!r} not found") from None


def _assume_args(role: RoleSpec) -> dict[str, str]:
    args = {"RoleSessionName": role.session_name}
    if role.external_id is not None:
        args["ExternalId"] = role.external_id
    return args


def _role_credentials(
    region: str, role: RoleSpec, profile: str | None, timeout: float
) -> DeferredRefreshableCredentials:
    """Credentials of ``role``, fetched at first use and refreshed before they expire. The
    refresh runs inside the call that needs it, so its STS request has the same timeout
    (a call then lasts two requests: runner/config.py counts both)."""
    base = _session(profile)
    source = base.get_credentials()
    # STS in the target's own region (botocore's regional endpoint; AWS_ENDPOINT_URL_STS
    # overrides it, as for any botocore client).
    sts = functools.partial(base.client, region_name=region, config=_config(2, timeout))
    fetcher = AssumeRoleCredentialFetcher(sts, source, role.role_arn, extra_args=_assume_args(role))

    def refresh() -> dict[str, Any]:
        if source is None:
            raise NoCredentialsError()
        try:
            return dict(fetcher.fetch_credentials())
        except ClientError as exc:
            raise AssumeRoleFailed(exc, region=region, role_arn=role.role_arn) from exc

    return DeferredRefreshableCredentials(refresh, method="assume-role")


def region_session(
    region: RegionSpec,
    profile: str | None = None,
    timeout: float = defaults.TOOL_REQUEST_TIMEOUT_SECONDS,
) -> boto3.session.Session:
    """The session ``region``'s clients are made with: ``profile`` (default: the one
    ``use_profile`` set), and for a region with a role, that role's refreshing credentials
    (``session.get_credentials()`` is the object its clients sign with); ``timeout`` bounds
    the STS request of a refresh too."""
    name = profile or _profile[0]
    role = (
        None if region.role is None else _role_credentials(region.name, region.role, name, timeout)
    )
    return _session(name, role)


def session_client(
    session: boto3.session.Session,
    service: str,
    region: RegionSpec,
    *,
    pool: int = 32,
    timeout: float = defaults.TOOL_REQUEST_TIMEOUT_SECONDS,
) -> Any:
    """A low-level client of ``session``; retries are ours (``retry.py``), so botocore
    makes one attempt, with the timeouts and pool size of ``_config``."""
    return session.client(
        service,
        region_name=region.name,
        endpoint_url=region.endpoint_url,
        config=_config(pool, timeout),
    )


def make_client(
    service: str,
    region: RegionSpec,
    *,
    pool: int = 32,
    profile: str | None = None,
    timeout: float = defaults.TOOL_REQUEST_TIMEOUT_SECONDS,
    session: boto3.session.Session | None = None,
) -> Any:
    """A low-level client; retries are ours (``retry.py``), so botocore makes one attempt.
    ``profile``: an AWS named profile (default: the one ``use_profile`` set). For a region
    with a role, the profile's credentials only assume it; the client signs as the role.
    ``timeout``: connect and read timeouts together (``_config``). ``session``: the
    region's session to make it with (``region_session``); default, a session of its own."""
    session = session or region_session(region, profile, timeout)
    return session_client(session, service, region, pool=pool, timeout=timeout)
