"""dynamodb-replicator: multi-master DynamoDB replication with user-controlled conflict rules."""

from __future__ import annotations

from dynamodb_replicator.stamping import stamp

__all__ = ["__version__", "stamp"]

__version__ = "0.1.0"
