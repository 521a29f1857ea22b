"""AWS Lambda entry point: ``dynamodb_replicator.lambda_handler.handler``.

Three parts, as in Powertools' batch utility: the records are decoded and applied by
``Replicator.process`` (the record handler and batch processor, shared with the runner);
``partial_failure_response`` turns its result into Lambda's ``batchItemFailures`` (only
the lowest failed SequenceNumber: Lambda resumes the shard from there); ``handler`` wires
both to the environment.

The invocation's deadline is kept: no write starts after ``remaining time - margin -
request timeout``, and the handler returns only once every write it started has answered,
timed out (each reaches DynamoDB within the request timeout of its start: the lean
transport's send-by instant, aws/http.py), or, its answer
lost, can no longer land (the writer waits that out, until the request lifetime after the
request started: core/landing.py), so none lands after the invocation ended and Lambda
retried the batch. Settling reads (and the deletes
they decide) may go on after that: they are safe at any time. A batch not finished by then
is named by its first record, so Lambda retries it instead of timing the invocation out.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

from dynamodb_replicator.aws.factory import build_replicator
from dynamodb_replicator.aws.lean import make_lean_client
from dynamodb_replicator.awslambda.emf import batch_emf
from dynamodb_replicator.awslambda.settings import LambdaSettings, settings_from_env
from dynamodb_replicator.clock import SystemClock
from dynamodb_replicator.core.codec import sequence_number_of, table_name_from_arn
from dynamodb_replicator.core.errors import MalformedRecordError
from dynamodb_replicator.core.lag import batch_ages
from dynamodb_replicator.core.model import RegionSpec, TableNames
from dynamodb_replicator.core.ports import Clock
from dynamodb_replicator.core.replicator import BatchResult, Replicator
from dynamodb_replicator.observe.conflict_log import open_conflict_log
from dynamodb_replicator.observe.contract_log import warn_violations
from dynamodb_replicator.observe.logs import configure

__all__ = ["deadline_of", "handler", "partial_failure_response", "process_event"]

log = logging.getLogger(__name__)

# Time kept back from the invocation's remaining time: to return, log and print metrics.
MIN_MARGIN_S = 1.0
MARGIN_SHARE = 0.1


def deadline_of(context: Any, now: float, lifetime: float = 0.0) -> float | None:
    """When the last write may start (epoch seconds), from a Lambda context: the answer of a
    write started then still comes (or its requests time out) ``lifetime`` before the
    invocation must return. ``lifetime`` is ``LambdaSettings.request_lifetime``: with a
    role, a write's call may refresh its credentials first (two requests)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    left = float(remaining()) / 1000.0
    return now + left - max(MIN_MARGIN_S, left * MARGIN_SHARE) - lifetime


def _process_in_time(
    replicator: Replicator,
    table: str,
    records: list[Any],
    deadline: float | None,
    request_timeout: float = 0.0,
) -> BatchResult | None:
    """``replicator.process`` with no write started after ``deadline``; it returns once
    every write started has answered or timed out, and None when settling did not finish
    by ``deadline + request_timeout`` (it goes on in the background: safe at any time)."""
    if deadline is None:
        return replicator.process(table, records, from_json=True)
    done: list[BatchResult] = []
    failed: list[BaseException] = []
    writes_ended = threading.Event()

    def run() -> None:
        try:
            done.append(
                replicator.process(
                    table, records, from_json=True, deadline=deadline, written=writes_ended.set
                )
            )
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)
        finally:
            writes_ended.set()

    worker = threading.Thread(target=run, name="replicate-batch", daemon=True)
    worker.start()
    # No write starts after the deadline and each ends within the request timeout (a write
    # whose answer was lost is waited out as long, from its request's start: it ends when a
    # request that timed out would have): this wait ends by ``deadline + request_timeout``.
    # It has no limit of its own on purpose: returning while a write is out, or may still
    # land, would let it land after Lambda's retry settled.
    writes_ended.wait()
    worker.join(max(0.0, deadline + request_timeout - SystemClock().now()))
    if failed:
        raise failed[0]
    return done[0] if done else None


def partial_failure_response(result: BatchResult) -> dict[str, list[dict[str, str]]]:
    lowest = result.failed_sequence()
    return {"batchItemFailures": [] if lowest is None else [{"itemIdentifier": lowest}]}


def process_event(
    event: Any,
    replicator: Replicator,
    *,
    metrics_namespace: str | None = None,
    clock: Clock | None = None,
    out: TextIO | None = None,
    deadline: float | None = None,
    names: TableNames | None = None,
    request_timeout: float = 0.0,
) -> dict[str, list[dict[str, str]]]:
    """Replicate one DynamoDB Streams event; raise only when no record can be named.

    ``names``: the tables' names per region; the event's table (named as in the source
    region) is replicated, logged and reported by its logical name.

    With ``deadline`` (epoch seconds), no write starts after it; the function returns once
    every write started has answered or timed out (``request_timeout`` after the deadline
    at the latest), naming the first record when the batch could not be finished.

    With ``metrics_namespace``, print the batch's metrics as EMF lines to ``out`` (default
    standard output: the function's log stream, where CloudWatch picks them up).
    """
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise MalformedRecordError("event has no Records list: not a DynamoDB Streams event")
    for record in records:
        sequence_number_of(record)  # a record we cannot name fails the whole batch
    if not records:
        return {"batchItemFailures": []}
    arns = {record.get("eventSourceARN", "") for record in records}
    if len(arns) != 1:
        raise MalformedRecordError(f"a batch must come from one stream, got {sorted(arns)}")
    table = (names or TableNames()).logical(table_name_from_arn(arns.pop()), replicator.source)
    result = _process_in_time(replicator, table, records, deadline, request_timeout)
    if result is None:
        first = min((sequence_number_of(r) for r in records), key=int)
        log.error(
            "batch not finished before the invocation's deadline; Lambda retries it",
            extra={"table": table, "sequence": first},
        )
        return {"batchItemFailures": [{"itemIdentifier": first}]}
    warn_violations(table, result.violations)
    if metrics_namespace is not None:
        now = (clock or SystemClock()).now()
        ages = batch_ages(records, now, replicator.fields)
        lines = batch_emf(metrics_namespace, table, replicator.source, result, ages=ages, now=now)
        stream = out or sys.stdout
        stream.write("\n".join(lines) + "\n")
        stream.flush()
    log.info(
        "batch replicated",
        extra={
            "table": table,
            "records": result.records,
            "echoes": result.echoes,
            "skipped": result.skipped,
            "record_failures": len(result.record_failures),
            "targets": {
                r.region: {"applied": r.applied, "stale": r.stale, "failed": r.failed_sequence}
                for r in result.targets.values()
            },
        },
    )
    return partial_failure_response(result)


@functools.lru_cache(maxsize=4)
def _replicator(environment: tuple[tuple[str, str], ...]) -> tuple[Replicator, LambdaSettings]:
    settings = settings_from_env(dict(environment))
    specs = [
        RegionSpec(name, settings.endpoints.get(name), role=settings.roles.get(name))
        for name in settings.regions
    ]
    conflicts = open_conflict_log(settings.replication.conflict_log)
    # The lean transport's send-by instant bounds when a write can reach DynamoDB after
    # the deadline check (docs/concepts/guarantees.md, Timing and clocks); botocore's does not.
    replicator = build_replicator(
        specs[0], specs, settings.replication, conflict_log=conflicts, make=make_lean_client
    )
    return replicator, settings


@functools.cache
def _configure_logging(level: str) -> None:
    configure(level, json_format=True)


def handler(event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda handler; clients are built once per configuration and reused across calls."""
    _configure_logging(os.environ.get("REPLICATOR_LOG_LEVEL", "INFO"))
    environment = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(("REPLICATOR_", "AWS_REGION")))
    )
    replicator, settings = _replicator(environment)
    timeout = settings.request_lifetime  # a write's requests, the STS refresh included
    deadline = deadline_of(context, SystemClock().now(), timeout)
    return process_event(
        event,
        replicator,
        metrics_namespace=settings.metrics_namespace,
        deadline=deadline,
        names=settings.replication.names,
        request_timeout=timeout,
    )
