"""`clickrouter serve --log-format json`: every stderr line is JSON, uvicorn's and workers' too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.http.http_support import PROFILE
from serving.http.postback_support import CLICK_SECRET, GLOBAL_SECRET


def serve(tmp_path: Path, models: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``clickrouter serve`` on a free port, its stderr in a file, waited on until ready."""
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
    command += ["--port", "0", "--port-file", str(port_file), "--events", str(tmp_path / "ev")]
    env = {
        **os.environ,
        "CLICKROUTER_POSTBACK_SECRET": GLOBAL_SECRET,
        "CLICKROUTER_CLICK_SECRET": CLICK_SECRET,
    }
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen([*command, *extra], env=env, stderr=stderr)
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, (tmp_path / "stderr").read_text()
        assert time.monotonic() < deadline, "the server was not ready in time"
        if port_file.exists():
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            if all_ready(url):
                return process, url
        time.sleep(0.05)


def all_ready(url: str, probes: int = 20) -> bool:
    """Ready on ``probes`` new connections in a row: the kernel spreads them over the workers."""
    try:
        return all(httpx.get(url + "/v2/health/ready").status_code == 200 for _ in range(probes))
    except httpx.TransportError:
        return False


def malformed_request(url: str) -> None:
    """Bytes that are no HTTP request: uvicorn itself logs a warning about them."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert conn.recv(1024).startswith(b"HTTP/1.1 400")


def log_entries(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "stderr").read_text("utf-8").splitlines()
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return entries


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_log_line_is_json(tmp_path: Path, sample_models: Path, workers: str) -> None:
    process, url = serve(tmp_path, sample_models, "--workers", workers, "--log-format", "json")
    try:
        assert httpx.post(url + "/v1/decide", json=PROFILE).status_code == 200
        malformed_request(url)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    entries = log_entries(tmp_path)
    assert {entry["stage"] for entry in entries} == {"serve"}
    loggers = {entry["logger"] for entry in entries}
    assert "uvicorn.error" in loggers  # uvicorn's own line about the malformed request
    # each worker's start (its model load) and stop (its events drained) are entries
    loaded = [e for e in entries if e["message"].startswith("serving model version")]
    stopped = [e for e in entries if e["message"].startswith(f"predictor {e['pid']} stopped")]
    assert len({e["pid"] for e in loaded}) == len({e["pid"] for e in stopped}) == int(workers)


def test_text_is_the_default(tmp_path: Path, sample_models: Path) -> None:
    process, url = serve(tmp_path, sample_models)
    try:
        malformed_request(url)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    lines = (tmp_path / "stderr").read_text("utf-8").splitlines()
    assert any(" WARNING uvicorn.error Invalid HTTP request" in line for line in lines), lines
    assert not any(line.startswith("{") for line in lines)
