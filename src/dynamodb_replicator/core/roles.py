"""A role in another AWS account that the replicator assumes for one region. Pure.

A region whose tables live in another account names an IAM role there (``role_arn``,
optionally ``external_id`` and ``session_name``); every client for that region signs its
calls with that role's temporary credentials. Read from the runner's TOML and from the
Lambda environment with the same rules, so both reject the same mistakes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynamodb_replicator.core.defaults import ROLE_SESSION_NAME
from dynamodb_replicator.core.errors import ConfigError

__all__ = ["ROLE_KEYS", "RoleSpec", "parse_role"]

ROLE_KEYS = frozenset({"role_arn", "external_id", "session_name"})
"""The keys of a region that describe its role (TOML and the Lambda environment)."""

# IAM's own character sets and lengths (AssumeRole's request parameters).
_ROLE_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """An IAM role to assume: its ARN, the external ID its trust policy may require, and
    the session name that shows in the target account's CloudTrail."""

    role_arn: str
    external_id: str | None = None
    session_name: str = ROLE_SESSION_NAME

    @property
    def account(self) -> str:
        """The 12-digit account the role (and so the region's tables) belongs to."""
        match = _ROLE_ARN.match(self.role_arn)
        return match.group(2) if match else ""


def _string(raw: Mapping[str, Any], key: str, pattern: re.Pattern[str], where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"{where}: {key} is invalid: {value!r} ({_RULES[key]})")
    return value


_RULES = {
    "role_arn": "an IAM role ARN: arn:aws:iam::123456789012:role/NAME",
    "external_id": "2 to 1224 of letters, digits and +=,.@:/-_",
    "session_name": "2 to 64 of letters, digits and +=,.@-_",
}


def parse_role(raw: Mapping[str, Any], where: str) -> RoleSpec | None:
    """The role described by ``raw``'s role keys (None: it has none). ``where`` names the
    place in the configuration for a ConfigError's one line."""
    arn = _string(raw, "role_arn", _ROLE_ARN, where)
    external_id = _string(raw, "external_id", _EXTERNAL_ID, where)
    session = _string(raw, "session_name", _SESSION_NAME, where)
    if arn is None:
        if external_id is not None or session is not None:
            raise ConfigError(f"{where}: external_id and session_name need a role_arn")
        return None
    return RoleSpec(arn, external_id, session or ROLE_SESSION_NAME)
