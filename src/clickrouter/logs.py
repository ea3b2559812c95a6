"""Log lines an operator can ship: plain text for a terminal, JSON lines for a pipeline.

Every long-running command (``serve``, ``consume``, ``train --watch``,
``demo``) takes ``--log-format text|json`` (setting ``log_format``). A JSON
line is one object with the fields a log pipeline indexes::

    {"ts": "2026-12-04T19:00:00.123Z", "level": "info", "logger": "clickrouter.stream.consumer",
     "message": "...", "stage": "consume", "version": "0.1.0", "pid": 1234, "host": "h1"}

plus every ``extra=`` field of the call (e.g. ``log.info("cycle", extra={"version": ...})``
is stored as ``"fields": {...}``, so it never overwrites the fixed keys).
A message is one line whatever it contains: JSON escapes newlines, so a
hostile value in a message cannot forge another entry.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from typing import Any, Literal

from clickrouter import __version__

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# attributes every LogRecord has; anything else came from ``extra=``
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, tagged with the command (``stage``) and version."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "stage": self.stage,
            "version": __version__,
            "pid": record.process,
            "host": self.host,
        }
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


def formatter(log_format: str, stage: str) -> logging.Formatter:
    return JsonFormatter(stage) if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: str, stage: str, *, level: int = logging.INFO) -> None:
    """Send this process's log records to stderr in ``log_format``, replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, stage))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def uvicorn_log_config(log_format: str, stage: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: worker
    processes are spawned and configure logging from it, not from the parent."""
    factory = "clickrouter.logs.JsonFormatter" if log_format == "json" else None
    fmt: dict[str, Any] = {"()": factory, "stage": stage} if factory else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"clickrouter": fmt},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "clickrouter",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
