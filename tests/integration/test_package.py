"""The Lambda zip is reproducible, and runs a recorded event in a clean virtualenv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from dynamodb_replicator.aws.clients import make_client
from dynamodb_replicator.cli.main import main
from dynamodb_replicator.core.model import RegionSpec
from dynamodb_replicator.deploy.package import build_zip, code_key, file_digest
from dynamodb_replicator.testing.local import DynamoDBLocal
from tests.support import REGIONS, create_table

DATA = Path(__file__).parent.parent / "data"


def test_same_input_same_bytes(tmp_path: Path) -> None:
    first = build_zip(tmp_path / "a.zip")
    second = build_zip(tmp_path / "b.zip")
    assert first == second
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert "dynamodb_replicator/lambda_handler.py" in names
    assert not any("__pycache__" in n or n.startswith("boto") for n in names)


def test_zip_runs_a_recorded_event_in_a_clean_venv(
    ddb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    archive = tmp_path / "replicator-lambda.zip"
    build_zip(archive)
    task = tmp_path / "task"  # what Lambda unpacks into /var/task
    zipfile.ZipFile(archive).extractall(task)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The Lambda runtime provides boto3 and nothing else of ours.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"boto3=={metadata.version('boto3')}"],
        check=True,
    )
    for region in REGIONS:
        create_table(
            make_client("dynamodb", RegionSpec(region, ddb_local.endpoint_url)),
            "Golden",
            (("id", "B"),),
            region=region,
        )
    event = json.loads((DATA / "golden_event.json").read_text())
    event["Records"] = event["Records"][:2]  # an insert and an update of the recorded item
    (tmp_path / "event.json").write_text(json.dumps(event))
    script = (
        "import json, sys\n"
        "from dynamodb_replicator.awslambda.handler import handler\n"
        "print(json.dumps(handler(json.load(open(sys.argv[1])), None)))\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(task),
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],  # this module's database
        "AWS_SECRET_ACCESS_KEY": "local",
        "REPLICATOR_REGIONS": ",".join(REGIONS),
        "REPLICATOR_ENDPOINT_URLS": ",".join(f"{r}={ddb_local.endpoint_url}" for r in REGIONS),
    }
    done = subprocess.run(
        [
            str(python),
            "-s",
            "-c",
            script.replace("sys.argv[1]", repr(str(tmp_path / "event.json"))),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=task,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"batchItemFailures": []}
    replica = make_client("dynamodb", RegionSpec("us-east-1", ddb_local.endpoint_url)).get_item(
        TableName="Golden", Key={"id": {"B": b"\x00\xffkey"}}
    )["Item"]
    assert replica["note"] == {"S": "grüße"}


def test_package_names_the_zip_by_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package", "--output-dir", str(tmp_path)]) == 0
    (archive,) = tmp_path.iterdir()
    key = code_key(file_digest(archive))
    assert archive.name == key
    assert f"code key: {key}" in capsys.readouterr().out
    assert main(["package", "--output-dir", str(tmp_path)]) == 0  # same sources, same name
    assert [p.name for p in tmp_path.iterdir()] == [key]
