"""Structured logging: JSON lines for machines, a short line for terminals.

Callers pass context in ``extra``; only those fields (never items) are written.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "TextFormatter", "configure"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


def _shown(value: object) -> object:
    # Keys and lists as JSON, never Python reprs.
    return json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else value


def _utc(epoch_seconds: float) -> str:
    """ISO 8601 in UTC to the millisecond: events of one second keep their order and
    spacing (how long a restart or a claim took can be read from the log)."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_seconds))
    return f"{whole}.{int(epoch_seconds * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _STANDARD and not k.startswith("_")
            }
        )
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={_shown(v)}" for k, v in _extras(record).items())
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        return f"{line} {extras}" if extras else line


def configure(level: str = "INFO", *, json_format: bool | None = None) -> None:
    """Log to stderr; JSON unless stderr is a terminal (or as ``json_format`` says)."""
    use_json = not sys.stderr.isatty() if json_format is None else json_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore logs whole request bodies (item contents) at DEBUG: it stays at WARNING
    # whatever level the user picks (tests/integration/test_log_privacy.py).
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
