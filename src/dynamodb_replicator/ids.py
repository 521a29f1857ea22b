"""The process's source of replica nonces: the one place that reads randomness for them.

A nonce must never repeat, across workers, processes, Lambda instances and restarts: a
random prefix per process and a counter (``core.ports.CountingNonces``).
"""

from __future__ import annotations

import uuid

from dynamodb_replicator.core.ports import CountingNonces

__all__ = ["PROCESS_NONCES"]

PROCESS_NONCES = CountingNonces(uuid.uuid4().hex[:16] + ".")
"""Every writer of this process draws its nonces here."""
