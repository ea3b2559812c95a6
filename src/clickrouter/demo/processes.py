"""The demo's real processes: started, watched and stopped by their pid.

Each stage runs as ``python -m ...`` with its output in ``<out>/logs/<name>.log``,
so a crash shows up as a dead process with its traceback in that file (the
orchestrator checks :meth:`ManagedProcess.check` every refresh) instead of
being swallowed by a thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from clickrouter.errors import ClickrouterError


class StageFailed(ClickrouterError):
    """A stage process exited unexpectedly (its log names the cause)."""

    status = 500


class ManagedProcess:
    """One child process with its log file; ``name`` is how the demo reports it."""

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def check(self, *, must_run: bool = False) -> None:
        """Raise :class:`StageFailed` (with the log's tail) if the process failed.

        ``must_run``: any exit is a failure (a server or a follower that stops
        on its own while traffic flows), not only a non-zero status.
        """
        code = self.popen.poll()
        if code is not None and (code != 0 or must_run):
            raise StageFailed(f"{self.name} exited with status {code}:\n{self.log_tail()}")

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the stages drain and exit cleanly), SIGKILL after ``timeout``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_for_port_file(process: ManagedProcess, path: Path, timeout: float) -> int:
    """The port a server wrote to ``path`` once it is listening."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check()
        if not process.running():
            raise StageFailed(f"{process.name} exited before listening:\n{process.log_tail()}")
        text = path.read_text().strip() if path.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.1)
    raise StageFailed(f"{process.name} did not start listening within {timeout:.0f} s")


def wait_ready(process: ManagedProcess, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200 (the predictor's readiness route)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.check()
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise StageFailed(f"{process.name} not ready at {url} within {timeout:.0f} s")
