"""Regenerate the golden Lambda events in this folder from a real DynamoDB Local.

.venv/bin/python -m tests.data.record_events
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.core.codec import record_to_lambda_event_record
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.testing.local import DynamoDBLocal

HERE = Path(__file__).parent
REGION = "eu-west-1"


def _records(server: DynamoDBLocal, table: str) -> list[dict[str, Any]]:
    ddb = make_client("dynamodb", RegionSpec(REGION, server.endpoint_url))
    streams = make_client("dynamodbstreams", RegionSpec(REGION, server.endpoint_url))
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return [
        record_to_lambda_event_record(r, event_source_arn=arn, aws_region=REGION) for r in records
    ]


def _table(ddb: Any, name: str, view: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    with DynamoDBLocal() as server:
        ddb = make_client("dynamodb", RegionSpec(REGION, server.endpoint_url))
        _table(ddb, "Golden", "NEW_AND_OLD_IMAGES")
        _table(ddb, "KeysOnly", "KEYS_ONLY")
        key = {"id": {"B": b"\x00\xffkey"}}
        item = {
            **key,
            "__timestamp": {"N": "1700000000000"},
            "big": {"N": "12345678901234567890123456789012345678"},
            "blobs": {"BS": [b"\x01\x02", b"\xfe"]},
            "doc": {"M": {"list": {"L": [{"NULL": True}, {"BOOL": True}, {"SS": ["x", "y"]}]}}},
        }
        ddb.put_item(TableName="Golden", Item=item)
        ddb.update_item(
            TableName="Golden",
            Key=key,
            UpdateExpression="SET #t = :t, note = :n",
            ExpressionAttributeNames={"#t": "__timestamp"},
            ExpressionAttributeValues={":t": {"N": "1700000000001"}, ":n": {"S": "grüße"}},
        )
        replica = {**item, "__timestamp": {"N": "1700000000002"}}
        replica["__originRegion"] = {"S": "us-east-1"}
        replica["__replicaTimestamp"] = {"N": "1700000000002"}
        ddb.put_item(TableName="Golden", Item=replica)
        ddb.delete_item(TableName="Golden", Key=key)
        ddb.put_item(TableName="Golden", Item={**key, "untimed": {"S": "no timestamp"}})
        ddb.put_item(TableName="KeysOnly", Item=item)
        golden = {"Records": _records(server, "Golden")}
        keys_only = {"Records": _records(server, "KeysOnly")}
    (HERE / "golden_event.json").write_text(json.dumps(golden, indent=2) + "\n")
    (HERE / "keys_only_event.json").write_text(json.dumps(keys_only, indent=2) + "\n")


if __name__ == "__main__":
    main()
