"""SIGKILL `clickrouter consume` with its decode worker: no process of it survives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clickrouter.datastore.manifest import load_manifest
from clickrouter.eventlog import EventLogWriter
from process_support import descendants, sigkill_and_collect, survivors, wait_until
from reference.sample_events import sample_lines

DAY = 86400.0


def committed(data: Path) -> bool:
    try:
        return load_manifest(data).generation > 0
    except Exception:  # not written yet, or mid-replace
        return False


def test_sigkill_while_following_leaves_no_decode_worker(tmp_path: Path) -> None:
    log = tmp_path / "log"
    writer = EventLogWriter(log, "w0")
    for line in sample_lines(20_000, seed=3, span_seconds=DAY):
        writer.write_raw(line)
    writer.close()
    data = tmp_path / "data"
    command = [sys.executable, "-m", "clickrouter.cli.consume", "consume", "--source", str(log)]
    command += ["--data", str(data), "--decode-worker", "--quiet", "--no-fsync"]
    command += ["--commit-events", "2000", "--window-seconds", str(DAY)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the worker decodes once it is up: kill after commits made with it running
        wait_until(lambda: committed(data) and len(descendants(proc.pid)) >= 1, 60, "a commit")
        tree = descendants(proc.pid)
        assert any("clickrouter.stream.decodeworker" in " ".join(p.cmdline()) for p in tree)
        assert proc.poll() is None  # following the log: it never ends by itself
        assert survivors(sigkill_and_collect(proc, tree), timeout=10) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
