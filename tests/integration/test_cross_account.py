"""Regions in other accounts, on moto's server at the API level.

A region's clients assume its role through STS (AWS_ENDPOINT_URL_STS points botocore's STS
calls at moto, as it would at any endpoint). moto keeps every account's tables apart and
puts a role's session in the role's account, so a table reached through a role is in that
account and nowhere else: the runner replicating between two accounts is real. With moto's
IAM enforcement on, STS refuses a role the credentials may not assume, and preflight says
which role, for which region.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import DeferredRefreshableCredentials

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.errors import ConfigError
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.core.roles import RoleSpec
from dynamodb_replicator.deploy.template import TemplateOptions, build_template
from dynamodb_replicator.runner.config import load_config
from dynamodb_replicator.runner.preflight import preflight
from tests.moto_server import MotoServer
from tests.runner_process import RunnerProcess
from tests.support import StreamPump, create_table, handler_env, scan

US, EU = "us-east-1", "eu-west-1"
HOME = "123456789012"  # moto's account for credentials it did not issue
OTHER = "111111111111"
ROLE = f"arn:aws:iam::{OTHER}:role/replicator"


@pytest.fixture(scope="module")
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server, emptied once: this module's tests build on its state."""
    return moto_server.reset()


@pytest.fixture
def sts(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """moto answers STS for this test (and for the processes it starts)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint_url)
    return moto


def assumed(moto: MotoServer, session_name: str) -> list[dict[str, Any]]:
    """The AssumeRole calls moto recorded for a session name (none yet: a freshly reset
    moto lists no STS data at all)."""
    with urllib.request.urlopen(f"{moto.endpoint_url}/moto-api/data.json") as response:
        data = json.load(response)
    calls = data.get("sts", {}).get("AssumedRole", [])
    return [r for r in calls if r["session_name"] == session_name]


def in_other_account(moto: MotoServer, session_name: str) -> RegionSpec:
    return RegionSpec(EU, moto.endpoint_url, role=RoleSpec(ROLE, "ext-1", session_name))


def test_a_regions_clients_sign_as_its_role(sts: MotoServer) -> None:
    identity = make_client("sts", in_other_account(sts, "test-identity")).get_caller_identity()
    assert identity["Account"] == OTHER
    assert identity["Arn"] == f"arn:aws:sts::{OTHER}:assumed-role/replicator/test-identity"
    home = make_client("sts", RegionSpec(EU, sts.endpoint_url)).get_caller_identity()
    assert home["Account"] == HOME
    (call,) = assumed(sts, "test-identity")
    assert (call["role_arn"], call["external_id"], call["region_name"]) == (ROLE, "ext-1", EU)


def test_credentials_are_fetched_when_needed_then_reused_until_they_refresh(
    sts: MotoServer,
) -> None:
    client = make_client("dynamodb", in_other_account(sts, "test-refresh"))
    credentials = client._request_signer._credentials
    assert isinstance(credentials, DeferredRefreshableCredentials)
    assert credentials.method == "assume-role"
    assert assumed(sts, "test-refresh") == []  # nothing is fetched before the first call
    for _ in range(3):
        client.list_tables()
    assert len(assumed(sts, "test-refresh")) == 1
    assert not credentials.refresh_needed()  # an hour's session: refreshed 15 min before


def test_tables_reached_through_a_role_are_in_its_account(sts: MotoServer) -> None:
    other = make_client("dynamodb", in_other_account(sts, "test-tables"))
    create_table(other, "Elsewhere", region=EU)
    arn = other.describe_table(TableName="Elsewhere")["Table"]["TableArn"]
    assert arn == f"arn:aws:dynamodb:{EU}:{OTHER}:table/Elsewhere"
    home = make_client("dynamodb", RegionSpec(EU, sts.endpoint_url))
    assert "Elsewhere" not in home.list_tables()["TableNames"]


def write_config(
    path: Path, moto: MotoServer, table: str, role: str = ROLE, session: str = "test-runner"
) -> Path:
    path.write_text(
        f'tables = ["{table}"]\n'
        f'[[regions]]\nname = "{US}"\nendpoint_url = "{moto.endpoint_url}"\n'
        f'[[regions]]\nname = "{EU}"\nendpoint_url = "{moto.endpoint_url}"\n'
        f'role_arn = "{role}"\nexternal_id = "ext-1"\nsession_name = "{session}"\n'
    )
    return path


def wait_for(clients: dict[str, Any], table: str, expected: dict[str, str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        found = {
            region: {i["pk"]["S"]: i["v"]["S"] for i in scan(client, table)}
            for region, client in clients.items()
        }
        if all(items == expected for items in found.values()):
            return
        assert time.monotonic() < deadline, f"{found} {log.read_text()[-3000:]}"
        time.sleep(0.3)


def test_the_runner_and_diff_work_across_accounts(sts: MotoServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cross.toml", sts, "Cross")
    specs = load_config(config).regions
    clients = {spec.name: make_client("dynamodb", spec) for spec in specs}
    for region, client in clients.items():
        create_table(client, "Cross", region=region)
    log = tmp_path / "runner.log"
    runner = RunnerProcess(config, log).start()
    try:
        expected = {}
        for n, (region, client) in enumerate(clients.items()):
            for i in range(3):
                key = f"{region}-{i}"
                item = {"pk": {"S": key}, "__timestamp": {"N": str(10 * n + i)}, "v": {"S": key}}
                client.put_item(TableName="Cross", Item=item)
                expected[key] = key
        wait_for(clients, "Cross", expected, log)
        assert runner.terminate() == 0
    finally:
        runner.close()
    # eu-west-1's table, state table and tombstones are all in the role's account.
    home = make_client("dynamodb", RegionSpec(EU, sts.endpoint_url)).list_tables()["TableNames"]
    assert "Cross" not in home and not [t for t in home if "dynamodb-replicator" in t]
    assert assumed(sts, "test-runner")  # the runner's clients (and ours) assumed the role
    assert main(["diff", "--config", str(config)]) == 0  # every CLI command goes through it


def test_the_lambda_deployed_from_the_template_writes_into_the_other_account(
    sts: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path / "lambda.toml", sts, "Lambda", session="test-lambda")
    config = load_config(path)
    clients = {spec.name: make_client("dynamodb", spec) for spec in config.regions}
    for region, client in clients.items():
        create_table(client, "Lambda", region=region)
    item = {"pk": {"S": "k"}, "__timestamp": {"N": "1"}, "v": {"S": "from us"}}
    clients[US].put_item(TableName="Lambda", Item=item)
    # The environment the template deploys us-east-1's function with (endpoints added).
    (function,) = [
        r["Properties"]
        for r in build_template(config, TemplateOptions(US))["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    env = {**function["Environment"]["Variables"], **handler_env(sts.endpoint_url, US, [US, EU])}
    before = len(assumed(sts, "test-lambda"))
    assert StreamPump(sts.endpoint_url, "Lambda", [US, EU]).deliver(US, env, monkeypatch) == 1
    (copied,) = scan(clients[EU], "Lambda")
    assert copied["v"] == {"S": "from us"}
    assert len(assumed(sts, "test-lambda")) > before  # the handler's own client assumed it


@pytest.fixture
def enforcing(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MotoServer, str]]:
    """A moto server that enforces IAM, and the base credentials of a user there that may
    do anything but assume the role ``.../denied``."""
    with MotoServer() as moto:
        denied = f"arn:aws:iam::{OTHER}:role/denied"
        iam = make_client("iam", RegionSpec(US, moto.endpoint_url))
        iam.create_user(UserName="runner")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": denied},
            ],
        }
        iam.put_user_policy(UserName="runner", PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="runner")["AccessKey"]
        create_table(
            make_client("dynamodb", RegionSpec(US, moto.endpoint_url)), "Orders", region=US
        )
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint_url)
        request = urllib.request.Request(
            f"{moto.endpoint_url}/moto-api/reset-auth",
            data=b"0",  # from now on every request is authenticated and authorized
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request).close()
        yield moto, denied


def test_preflight_names_the_role_sts_refused(
    enforcing: tuple[MotoServer, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moto, denied = enforcing
    path = write_config(tmp_path / "denied.toml", moto, "Orders", role=denied)
    with pytest.raises(ConfigError) as caught:
        preflight(load_config(path))
    (line,) = str(caught.value).splitlines()  # one line for the region, none for us-east-1
    assert line.startswith(f"cannot assume role {denied} for region {EU}: AccessDenied: ")
    assert main(["run", "--config", str(path), "--log-format", "text"]) == 2
    assert f"error: cannot assume role {denied} for region {EU}: AccessDenied" in (
        capsys.readouterr().err
    )
