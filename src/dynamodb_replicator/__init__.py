"""dynamodb-replicator: multi-master DynamoDB replication with user-controlled conflict rules."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
