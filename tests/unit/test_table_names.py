"""Per-region table names: the config's two forms, its errors, the one translation
(``TableNames``), the Lambda's environment and the template built from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamodb_replicator.awslambda.settings import replication_environment, settings_from_env
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import TableNames
from dynamodb_replicator.core.settings import ReplicationSettings
from dynamodb_replicator.deploy.template import TableKeys, TemplateOptions, build_template
from dynamodb_replicator.runner.config import load_config, parse_config

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
EU_ORDERS, US_ORDERS = "EuStack-Orders-1A2B3C", "UsStack-Orders-9Z8Y7X"

DOCUMENTED = f"""
tables = ["Customers", "Orders"]
[[regions]]
name = "{EU}"
[[regions]]
name = "{US}"
[[regions]]
name = "{AP}"

[table_names.Orders]
{EU} = "{EU_ORDERS}"
{US} = "{US_ORDERS}"
"""


def regions(*names: str) -> list[dict[str, Any]]:
    return [{"name": n} for n in names]


def test_the_documented_form_maps_some_regions_and_defaults_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "replicator.toml"
    path.write_text(DOCUMENTED)
    config = load_config(path)
    names = config.replication.names
    assert config.tables == ("Customers", "Orders")  # logical names: the identity
    assert names.physical("Orders", EU) == EU_ORDERS
    assert names.physical("Orders", US) == US_ORDERS
    assert names.physical("Orders", AP) == "Orders"  # not named: the logical name
    assert names.physical("Customers", EU) == "Customers"
    assert names.tombstones("Orders", EU, ".__tombstones") == f"{EU_ORDERS}.__tombstones"


def test_the_old_form_keeps_one_name_everywhere() -> None:
    config = parse_config({"tables": ["Orders"], "regions": regions(EU, US)})
    assert config.replication.names == TableNames()
    assert config.replication == ReplicationSettings(
        policy=config.replication.policy, fields=config.replication.fields
    )
    assert config.replication.names.physical("Orders", EU) == "Orders"


@pytest.mark.parametrize(
    ("table_names", "message"),
    [
        ({"Orders": {"sa-east-1": "X-Orders"}}, "region sa-east-1 is not in [[regions]]"),
        ({"Orders": {EU: "no"}}, "invalid table name 'no'"),
        ({"Orders": {EU: "has space"}}, "invalid table name"),
        ({"Orders": {EU: 3}}, "invalid table name 3"),
        ({"Orders": {EU: "Shared-1", US: "Us-1"}, "Users": {EU: "Shared-1"}}, "both Shared-1 in"),
        ({"Orders": {EU: "Users"}}, "tables Users and Orders are both Users in eu-west-1"),
        ({"Invoices": {EU: "EuInvoices"}}, "table_names.Invoices: Invoices is not in tables"),
        ({"Orders": "EuOrders"}, "table_names.Orders must map regions to names"),
        (["Orders"], "table_names must be a table of tables"),
    ],
)
def test_bad_mappings_are_one_line_errors(table_names: Any, message: str) -> None:
    data = {"tables": ["Orders", "Users"], "regions": regions(EU, US), "table_names": table_names}
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_tables_may_swap_names_in_a_region() -> None:
    names = parse_config(
        {
            "tables": ["Orders", "Users"],
            "regions": regions(EU, US),
            "table_names": {"Orders": {EU: "Users"}, "Users": {EU: "Orders"}},
        }
    ).replication.names
    assert (names.physical("Orders", EU), names.physical("Users", EU)) == ("Users", "Orders")
    assert (names.logical("Users", EU), names.logical("Orders", EU)) == ("Orders", "Users")


def test_a_stream_records_table_is_read_back_as_its_logical_name() -> None:
    names = TableNames.of({"Orders": {EU: EU_ORDERS}})
    assert names.logical(EU_ORDERS, EU) == "Orders"
    assert names.logical("Orders", US) == "Orders"  # not renamed there
    assert names.logical("Customers", EU) == "Customers"
    with pytest.raises(ConfigError, match=f"table Orders in {EU} is not replicated"):
        names.logical("Orders", EU)  # the replicated Orders is EU_ORDERS there


def test_the_store_translates_tables_and_their_tombstone_tables() -> None:
    names = TableNames.of({"Orders": {EU: EU_ORDERS, US: US_ORDERS}})
    assert names.in_region(EU, ".graves") == {
        "Orders": EU_ORDERS,
        "Orders.graves": f"{EU_ORDERS}.graves",
    }
    assert names.in_region(AP, ".graves") == {}


def test_the_lambda_environment_round_trips_the_mapping() -> None:
    settings = ReplicationSettings(names=TableNames.of({"Orders": {EU: EU_ORDERS, US: US_ORDERS}}))
    environment = replication_environment(settings)
    assert environment["REPLICATOR_TABLE_NAMES"] == (
        f"Orders:{EU}={EU_ORDERS},Orders:{US}={US_ORDERS}"
    )
    read = settings_from_env({"REPLICATOR_REGIONS": f"{EU},{US}", "AWS_REGION": EU, **environment})
    assert read.replication.names == settings.names
    assert "REPLICATOR_TABLE_NAMES" not in replication_environment(ReplicationSettings())


@pytest.mark.parametrize("raw", ["Orders=X-Orders", "Orders:eu-west-1", ":eu-west-1=X", "O:=X"])
def test_a_malformed_environment_mapping_is_a_config_error(raw: str) -> None:
    env = {"REPLICATOR_REGIONS": f"{EU},{US}", "AWS_REGION": EU, "REPLICATOR_TABLE_NAMES": raw}
    with pytest.raises(ConfigError, match="REPLICATOR_TABLE_NAMES"):
        settings_from_env(env)


def statements(template: dict[str, Any]) -> dict[str, list[str]]:
    policy = template["Resources"]["ReplicatorRole"]["Properties"]["Policies"][0]
    return {
        s["Sid"]: sorted(json.dumps(r) for r in s["Resource"])
        for s in policy["PolicyDocument"]["Statement"]
    }


def arn(region: str, name: str) -> str:
    return json.dumps(
        {"Fn::Sub": f"arn:${{AWS::Partition}}:dynamodb:{region}:${{AWS::AccountId}}:table/{name}"}
    )


@pytest.mark.parametrize("per_target", [False, True], ids=["one-function", "per-target"])
def test_the_template_addresses_each_regions_tables_and_tells_the_function(
    per_target: bool,
) -> None:
    config = parse_config(
        {
            "tables": ["Customers", "Orders"],
            "regions": regions(EU, US, AP),
            "table_names": {"Orders": {EU: EU_ORDERS, US: US_ORDERS}},
        }
    )
    template = build_template(config, TemplateOptions(EU, per_target=per_target))
    functions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert len(functions) == (2 if per_target else 1)
    for function in functions:
        # The handler's own reader, on exactly what the function is deployed with.
        settings = settings_from_env(function["Environment"]["Variables"])
        assert settings.replication == config.replication
        assert settings.replication.names.physical("Orders", US) == US_ORDERS
    found = statements(template)
    assert found["ReadSourceStreams"] == sorted(
        [arn(EU, f"{EU_ORDERS}/stream/*"), arn(EU, "Customers/stream/*")]
    )
    assert found["ReadRememberedDeletes"] == sorted(
        [arn(EU, f"{EU_ORDERS}.__tombstones"), arn(EU, "Customers.__tombstones")]
    )
    orders = {EU: EU_ORDERS, US: US_ORDERS, AP: "Orders"}
    assert found["WriteReplicas"] == sorted(
        [arn(r, n) for r, n in orders.items()] + [arn(r, "Customers") for r in orders]
    )
    assert found["RememberDeletes"] == sorted(
        [arn(r, f"{n}.__tombstones") for r, n in orders.items()]
        + [arn(r, "Customers.__tombstones") for r in orders]
    )
    # The stream ARN parameter keeps its logical id (stacks update in place) and says
    # which table's stream it wants.
    parameter = template["Parameters"]["OrdersStreamArn"]
    assert EU_ORDERS in parameter["Description"]


def test_with_tables_creates_the_regions_names() -> None:
    config = parse_config(
        {
            "tables": ["Orders"],
            "regions": regions(EU, US),
            "table_names": {"Orders": {US: US_ORDERS}},
        }
    )
    keys = {"Orders": TableKeys((("pk", "HASH", "S"),))}
    template = build_template(config, TemplateOptions(US, with_tables=keys))
    tables = sorted(
        r["Properties"]["TableName"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::DynamoDB::Table"
    )
    assert tables == [US_ORDERS, f"{US_ORDERS}.__tombstones"]
