"""The generated stack deploys on moto's CloudFormation."""

from __future__ import annotations

import time

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.package import build_zip
from dynamodb_replicator.deploy.template import TableKeys, TemplateOptions, build_template, to_yaml
from dynamodb_replicator.runner.config import parse_config
from tests.moto_server import MotoServer

CONFIG = parse_config(
    {
        "tables": ["Orders"],
        "regions": [{"name": "us-east-1"}, {"name": "eu-west-1"}, {"name": "ap-southeast-1"}],
    }
)


def test_stack_deploys_with_per_target_functions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with MotoServer() as moto:
        spec = RegionSpec("us-east-1", moto.endpoint_url)
        s3, cloudformation = make_client("s3", spec), make_client("cloudformation", spec)
        s3.create_bucket(Bucket="code")
        build_zip(tmp_path / "replicator-lambda.zip")
        s3.put_object(
            Bucket="code",
            Key="replicator-lambda.zip",
            Body=(tmp_path / "replicator-lambda.zip").read_bytes(),
        )
        template = build_template(
            CONFIG,
            TemplateOptions(
                "us-east-1",
                per_target=True,
                with_tables={"Orders": TableKeys((("pk", "HASH", "S"),))},
            ),
        )
        cloudformation.create_stack(
            StackName="replicator",
            TemplateBody=to_yaml(template),
            Parameters=[{"ParameterKey": "CodeS3Bucket", "ParameterValue": "code"}],
            Capabilities=["CAPABILITY_IAM"],
        )
        deadline = time.monotonic() + 60
        while True:
            stack = cloudformation.describe_stacks(StackName="replicator")["Stacks"][0]
            if not stack["StackStatus"].endswith("IN_PROGRESS") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        mappings = make_client("lambda", spec).list_event_source_mappings()["EventSourceMappings"]
        assert len(mappings) == 2  # one per target region's function
        assert make_client("dynamodb", spec).describe_table(TableName="Orders.__tombstones")
