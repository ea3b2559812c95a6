"""Children that end with their parent, including when the parent ended first."""

from __future__ import annotations

import signal
import subprocess
import sys

from clickrouter.processes import EXIT_STATUS
from process_support import descendants, sigkill_and_collect, survivors

SLEEPER = "import time; time.sleep(60)"


def ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def child(code: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", code], timeout=30, check=False)


def test_die_with_parent_signals_at_once_when_the_parent_ended_before_it_was_armed() -> None:
    code = f"from clickrouter.processes import die_with_parent\ndie_with_parent({ended_pid()})\n"
    assert child(code + SLEEPER).returncode == -signal.SIGKILL


def test_exit_with_parent_exits_at_once_when_the_process_watched_ended_already() -> None:
    code = f"from clickrouter.processes import exit_with_parent\nexit_with_parent({ended_pid()})\n"
    assert child(code + SLEEPER).returncode == EXIT_STATUS


MIDDLE = """
import os, subprocess, sys, time
for arm in ("die_with_parent", "exit_with_parent"):
    code = (
        f"from clickrouter.processes import {arm}; {arm}({os.getpid()}); "
        "import os; os.write(1, b'armed\\\\n'); import time; time.sleep(60)"
    )
    subprocess.Popen([sys.executable, "-c", code])
time.sleep(60)
"""


def test_children_armed_either_way_end_when_their_parent_is_killed() -> None:
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE], stdout=subprocess.PIPE)
    try:
        # both children write to it once armed, each in one write(2): print's
        # separate writes of the text and the newline could interleave
        assert middle.stdout is not None
        assert [middle.stdout.readline() for _ in range(2)] == [b"armed\n"] * 2
        tree = descendants(middle.pid)
        assert len(tree) == 2
        assert survivors(sigkill_and_collect(middle, tree), timeout=5) == []
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait()
        if middle.stdout is not None:
            middle.stdout.close()
