"""Warn about contract violations (``core.contract``): one WARNING per violation, with the
key (DynamoDB JSON), the region where it was written, and what to fix."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dynamodb_replicator.core.codec import key_object
from dynamodb_replicator.core.contract import Violation

__all__ = ["warn_violations"]

log = logging.getLogger("dynamodb_replicator.contract")


def warn_violations(table: str, violations: Iterable[Violation]) -> None:
    """Log each violation at WARNING (stderr with the runner's and the Lambda's logging)."""
    for violation in violations:
        log.warning(
            "contract violation: %s",
            violation.message,
            extra={
                "kind": violation.kind.value,
                "table": table,
                "region": violation.region,
                "key": key_object(violation.key.to_attributes()),
                "sequence": violation.sequence_number,
            },
        )
