"""The one way the tool writes a file others read: replaced whole, never seen half-written.

A running runner re-reads its config file when it changes (``add-region`` appends a region
to it); a reader must find either the old text or the new one, also after a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path | str, text: str) -> None:
    """Write ``text`` to a temporary file in the same directory, flush it to disk, and
    rename it over ``path`` (atomic on POSIX; the file keeps its permission bits)."""
    target = Path(path)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, target.stat().st_mode & 0o7777)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
