"""The documented Lambda entry point, ``dynamodb_replicator.lambda_handler.handler``.

Deployed templates name this path; the handler itself lives in ``awslambda.handler``.
"""

from __future__ import annotations

from dynamodb_replicator.awslambda.handler import handler

__all__ = ["handler"]
