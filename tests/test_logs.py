"""``--log-format json``: one JSON object per line, tagged with stage and version."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickrouter import __version__
from clickrouter.logs import JsonFormatter, uvicorn_log_config

FIXED_KEYS = {"ts", "level", "logger", "message", "stage", "version", "pid", "host"}


def record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("clickrouter.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_hostile_message_stays_one_entry() -> None:
    """A value with newlines and a forged entry cannot start a second log line."""
    forged = 'x\n{"level": "info", "message": "admin login ok"}\r\n'
    line = JsonFormatter("serve").format(record("bad request from %s", forged, client=forged))
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)
    assert entry["message"] == f"bad request from {forged}"
    assert entry["fields"] == {"client": forged}
    assert set(entry) >= FIXED_KEYS and entry["stage"] == "serve"
    assert entry["version"] == __version__ and entry["level"] == "warning"


def test_extra_fields_never_replace_the_fixed_keys() -> None:
    entry = json.loads(JsonFormatter("train").format(record("cycle", version="v1", stage="x")))
    assert (entry["version"], entry["stage"]) == (__version__, "train")
    assert entry["fields"] == {"version": "v1", "stage": "x"}


def test_an_exception_is_kept_in_the_entry() -> None:
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        failed = record("write failed")
        failed.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter("consume").format(failed))
    assert "RuntimeError: disk full" in entry["exception"]


def test_the_uvicorn_config_is_valid_for_dictconfig() -> None:
    import logging.config

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logging.config.dictConfig(uvicorn_log_config("json", "serve"))
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def clickrouter(*args: str, module: str = "clickrouter.cli") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKROUTER_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no log line"
    return [json.loads(line) for line in lines]  # every line is JSON, or this fails


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    done = clickrouter("simulate", "--out", str(out), "--clicks", "3000", "--campaigns", "5")
    assert done.returncode == 0, done.stderr
    return out


def consume(simulated: Path) -> subprocess.CompletedProcess[str]:
    return clickrouter(
        "consume",
        "--source", str(simulated / "events"), "--data", str(simulated / "data"),
        "--once", "--flush-all", "--no-fsync", "--log-format", "json",
        module="clickrouter.cli.consume",
    )  # fmt: skip


def test_consume_logs_json_lines_only(simulated: Path) -> None:
    done = consume(simulated)
    assert done.returncode == 0, done.stderr
    (entry,) = [e for e in json_lines(done.stderr) if e["message"] == "consume finished"]
    assert entry["stage"] == "consume" and entry["version"] == __version__
    assert entry["fields"]["stats"]["events_read"] == 3000


@pytest.mark.slow
def test_train_watch_logs_each_cycle_as_json(simulated: Path, tmp_path: Path) -> None:
    if not (simulated / "data").exists():
        assert consume(simulated).returncode == 0
    done = clickrouter(
        "train", "--data", str(simulated / "data"), "--store", str(tmp_path / "store"),
        "--catalog", str(simulated / "campaigns.json"), "--watch", "--cycles", "1",
        "--every", "1s", "--workers", "0", "--log-format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (cycle,) = [e for e in json_lines(done.stderr) if e["message"] == "cycle done"]
    assert cycle["stage"] == "train" and cycle["fields"]["published"] is True
    assert cycle["fields"]["campaigns"] == 5 and cycle["fields"]["version"].startswith("v")
