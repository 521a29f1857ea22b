"""How a function is wired to a stream: its name and its event source mapping's settings.

One place for both, read by ``template`` (parameter defaults) and ``subscribe`` (API calls),
so a function deployed one way can be found and wired the other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_NAME_PREFIX", "MappingSettings", "function_name"]

DEFAULT_NAME_PREFIX = "dynamodb-replicator"

# Lambda discards a record this old (and stores the batch in the on-failure destination).
# DynamoDB Streams keeps records 24 h: 12 h leaves half a day to read the records the
# destination's metadata points at while the stream still holds them, and bounds how long a
# target region's outage can hold a shard back.
DEFAULT_MAXIMUM_RECORD_AGE_SECONDS = 12 * 3600
# A poison record (a permanent error) fails fast, without in-call retries, so these pass in
# minutes; a target that stays down reaches MaximumRecordAgeInSeconds first.
DEFAULT_MAXIMUM_RETRY_ATTEMPTS = 1000


def function_name(prefix: str, region: str, target: str | None = None) -> str:
    """``PREFIX-REGION``, or ``PREFIX-REGION-to-TARGET`` for a per-target function."""
    return f"{prefix}-{region}" + (f"-to-{target}" if target else "")


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """An event source mapping's settings; ``on_failure`` is a destination ARN (S3, SQS, SNS)."""

    batch_size: int = 100
    parallelization_factor: int = 1
    maximum_retry_attempts: int = DEFAULT_MAXIMUM_RETRY_ATTEMPTS
    maximum_record_age_in_seconds: int = DEFAULT_MAXIMUM_RECORD_AGE_SECONDS
    bisect_on_error: bool = True
    on_failure: str | None = None

    def as_api(self) -> dict[str, Any]:
        """The settings as CreateEventSourceMapping / UpdateEventSourceMapping arguments."""
        api: dict[str, Any] = {
            "BatchSize": self.batch_size,
            "ParallelizationFactor": self.parallelization_factor,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": self.maximum_record_age_in_seconds,
            "BisectBatchOnFunctionError": self.bisect_on_error,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
        if self.on_failure:
            api["DestinationConfig"] = {"OnFailure": {"Destination": self.on_failure}}
        return api
