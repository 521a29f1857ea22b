"""The content of an item, as one hash: what ``diff`` compares between regions, and what a
replica write seals into its nonce (``core.policy.is_genuine``) so that an application
update of replica content is told from the replica content itself. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from dynamodb_replicator.core.model import Item, SystemAttributes

__all__ = ["digest"]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"$b": bytes(value).hex()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _canonical_value(value: Mapping[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    if kind == "BS":  # sets come back in any order
        return {kind: sorted(bytes(v).hex() for v in raw)}
    if kind in ("SS", "NS"):
        return {kind: sorted(raw)}
    if kind == "M":
        return {"M": {k: _canonical_value(v) for k, v in sorted(raw.items())}}
    if kind == "L":
        return {"L": [_canonical_value(v) for v in raw]}
    return {kind: _plain(raw)}


def digest(item: Item, fields: SystemAttributes) -> str:
    """Content hash, ignoring the replicator's own attributes (sets in any order, maps in
    any key order, Binary as bytes: the same item in any stream or read form)."""
    skip = fields.added()
    content = {k: _canonical_value(v) for k, v in item.items() if k not in skip}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]
