"""Process trees of real subprocesses: who descends from whom, who outlived a kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` now (children, their children, ...)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def running(process: psutil.Process) -> bool:
    """True while the process runs (the same one: psutil checks its start time)."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return str(process.pid)


def survivors(processes: list[psutil.Process], timeout: float) -> list[str]:
    """The processes still running after ``timeout`` seconds (as descriptions).

    They are then killed, so a failing test leaves no process behind either.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if running(p)]
    found = [describe(p) for p in alive]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return found


def sigkill_and_collect(
    proc: subprocess.Popen[bytes], tree: list[psutil.Process]
) -> list[psutil.Process]:
    """SIGKILL ``proc`` and reap it; return ``tree`` plus any descendant that appeared since."""
    latest = descendants(proc.pid)
    known = {p.pid for p in tree}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return tree + [p for p in latest if p.pid not in known]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def busiest_thread_seconds(process: psutil.Process, *, skip_main: bool) -> float:
    """CPU seconds of the process's busiest thread (optionally not its main thread)."""
    try:
        threads = process.threads()
    except psutil.Error:
        return 0.0
    return max(
        (t.user_time + t.system_time for t in threads if not (skip_main and t.id == process.pid)),
        default=0.0,
    )
