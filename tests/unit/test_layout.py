"""The pure core loads no AWS SDK: importing every module under core/ leaves boto3 and
botocore out of ``sys.modules`` (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

from dynamodb_replicator import core

PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"boto3", "botocore"}
                        or m.startswith("dynamodb_replicator.aws"))))
"""


def core_modules() -> list[str]:
    return [f"{core.__name__}.{m.name}" for m in pkgutil.iter_modules(core.__path__)]


def test_core_has_the_documented_modules() -> None:
    names = {name.rsplit(".", 1)[-1] for name in core_modules()}
    assert {"model", "codec", "conditions", "policy", "plan", "replicator", "ports"} <= names


def test_core_imports_no_aws_sdk() -> None:
    modules = core_modules()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out) == []
