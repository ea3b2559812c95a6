"""Helpers of the monitoring tests: free loopback ports, real scrapes, real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, by (name, labels)."""
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape_until(
    url: str, condition: Callable[[Samples], bool], timeout: float, what: str
) -> Samples:
    """Scrape ``url`` until ``condition`` holds (the last scrape), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while time.monotonic() < deadline:
        try:
            last = scrape(url)
        except httpx.TransportError:
            pass
        else:
            if condition(last):
                return last
        time.sleep(0.1)
    shown = {f"{name}{dict(labels)}": v for (name, labels), v in sorted(last.items())}
    raise AssertionError(f"timed out waiting for {what}; last scrape: {shown}")


def clickrouter(*args: str, module: str = "clickrouter.cli") -> subprocess.Popen[bytes]:
    """``python -m module args`` as a real process (stderr kept for the failure message)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, str]:
    """SIGTERM (SIGKILL after ``timeout``); the exit code and what it wrote on stderr."""
    if process.poll() is None:
        process.terminate()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate(timeout=timeout)
    return process.returncode, (stderr or b"").decode(errors="replace")
