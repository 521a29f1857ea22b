"""A reproducible Lambda zip: same sources, same bytes.

The zip holds the ``dynamodb_replicator`` package (the handler has no other runtime
dependency: boto3 comes with the Lambda Python runtime). Entries are sorted, timestamps
fixed at 1980-01-01, permissions 0644, compression level fixed; ``__pycache__`` is left out.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import dynamodb_replicator
from dynamodb_replicator.core.errors import ConfigError

__all__ = ["build_keyed_zip", "build_zip", "code_key", "file_digest"]

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _files(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield f"{prefix}{path.relative_to(root).as_posix()}", path


def _vendored_boto3(directory: Path) -> list[tuple[str, Path]]:
    """boto3 at the installed version, installed into ``directory`` without bytecode."""
    version = metadata.version("boto3")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(directory),
        f"boto3=={version}",
    ]
    if subprocess.run(command, check=False).returncode != 0:
        raise ConfigError(f"could not install boto3=={version} for the zip")
    return [(name, path) for name, path in _files(directory, "") if not name.endswith("INSTALLER")]


def code_key(digest: str) -> str:
    """The S3 key of a zip with SHA-256 ``digest``: new code, new key, so a stack update
    that passes it replaces the function's code (an unchanged key would not)."""
    return f"replicator-lambda-{digest[:16]}.zip"


def file_digest(path: Path) -> str:
    """A file's SHA-256, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_zip(output: Path, *, with_boto3: bool = False) -> str:
    """Write the zip to ``output``; return its SHA-256."""
    package = Path(dynamodb_replicator.__file__).parent
    entries = list(_files(package, "dynamodb_replicator/"))
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as vendor:
        if with_boto3:
            entries += _vendored_boto3(Path(vendor))
        with zipfile.ZipFile(output, "w") as archive:
            for name, path in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes(), compresslevel=9)
    return file_digest(output)


def build_keyed_zip(directory: Path, *, with_boto3: bool = False) -> Path:
    """Write the zip into ``directory`` under its content-hashed name (``code_key``)."""
    partial = directory / "replicator-lambda.zip.partial"
    digest = build_zip(partial, with_boto3=with_boto3)
    return partial.replace(directory / code_key(digest))
