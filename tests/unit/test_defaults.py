"""One place for defaults: the runner's config, the Lambda's environment and the adapters
start from ``core.defaults``, and the values are the documented ones."""

from __future__ import annotations

from dynamodb_replicator.aws.tombstones import DEFAULT_SUFFIX
from dynamodb_replicator.awslambda.settings import settings_from_env
from dynamodb_replicator.core import defaults
from dynamodb_replicator.runner.config import parse_config


def test_documented_values() -> None:
    assert defaults.TOMBSTONE_SUFFIX == ".__tombstones"
    assert defaults.TOMBSTONE_TTL_SECONDS == 48 * 3600
    assert defaults.STATE_TABLE == "dynamodb-replicator-state"
    assert defaults.tombstone_table("Orders") == "Orders.__tombstones"
    assert defaults.tombstone_table("Orders", ".t") == "Orders.t"


def test_runner_config_and_lambda_environment_start_from_the_defaults() -> None:
    config = parse_config(
        {"tables": ["Orders"], "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}]}
    )
    env = settings_from_env(
        {"AWS_REGION": "eu-west-1", "REPLICATOR_REGIONS": "eu-west-1,us-east-1"}
    )
    for replication in (config.replication, env.replication):
        assert replication.tombstone_suffix == defaults.TOMBSTONE_SUFFIX == DEFAULT_SUFFIX
        assert replication.tombstone_ttl_seconds == defaults.TOMBSTONE_TTL_SECONDS
        assert replication.max_workers == defaults.MAX_WORKERS
    assert config.state_table == defaults.STATE_TABLE
    assert config.page_limit == defaults.PAGE_LIMIT
    assert env.metrics_namespace == defaults.METRICS_NAMESPACE
