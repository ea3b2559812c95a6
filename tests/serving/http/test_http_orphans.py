"""Killed predictors leave no process behind.

SIGKILL the supervisor of `clickrouter serve --workers 2` after a reload: below
it are two uvicorn workers, a fork server in each (started by the reload) and
multiprocessing's helpers. The workers stop as on SIGTERM, so the decisions
they answered are in the event log. SIGKILL a process that loaded a bank as a
worker does: its fork server and its generic-model workers end with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from clickrouter.events import ClickEvent
from clickrouter.modelstore.store import ModelStore
from clickrouter.profile import profile_frame
from fakes import fitted_pipeline, random_profiles, write_model_directory
from process_support import descendants, sigkill_and_collect, survivors, wait_until
from serving.http.http_support import PROFILE, publish, read_events


def all_workers_serve(url: str, version: str) -> bool:
    """16 fresh connections in a row (spread over both workers) answer ``version``."""
    for _ in range(16):
        try:
            answer = httpx.get(url + "/v1/models")
        except httpx.TransportError:
            return False
        if answer.status_code != 200 or answer.json()["store_version"] != version:
            return False
    return True


def command_lines(pid: int) -> list[str]:
    lines = []
    for process in descendants(pid):
        try:
            lines.append(" ".join(process.cmdline()))
        except Exception:  # ended meanwhile
            continue
    return lines


def test_sigkill_of_the_supervisor_leaves_no_process(tmp_path: Path, sample_models: Path) -> None:
    store = ModelStore(tmp_path / "store")
    models = sample_models
    publish(store, models, "v1")
    port_file, events = tmp_path / "port", tmp_path / "events"
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(store.root)]
    command += ["--workers", "2", "--cache-dir", str(tmp_path / "cache"), "--port", "0"]
    command += ["--port-file", str(port_file), "--events", str(events)]
    env = {**os.environ, "CLICKROUTER_RELOAD_POLL_SECONDS": "0.2"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_file.exists() or proc.poll() is not None, 60, "the port file")
        assert proc.poll() is None
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        wait_until(lambda: all_workers_serve(url, "v1"), 90, "both workers ready")
        publish(store, models, "v2")  # each worker compiles it through its fork server
        wait_until(lambda: all_workers_serve(url, "v2"), 90, "both workers reloaded")
        answered = []
        for _ in range(20):
            decision = httpx.post(url + "/v1/decide", json=PROFILE)
            assert decision.status_code == 200
            answered.append(decision.json()["click_id"])

        lines = command_lines(proc.pid)
        assert sum("forkserver" in line for line in lines) >= 2, lines
        tree = descendants(proc.pid)
        assert survivors(sigkill_and_collect(proc, tree), timeout=20) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    logged = {e.click_id for e in read_events(events) if isinstance(e, ClickEvent)}
    assert set(answered) <= logged
    segments = list(events.glob("*.jsonl"))
    assert len({s.name.split(".")[0] for s in segments}) == 2  # one writer per worker
    assert all(Path(f"{s}.done").exists() for s in segments)  # sealed: a clean shutdown


BANK_HOLDER = """
import sys
from pathlib import Path
from clickrouter.serving.engine.holder import load_live_bank
live = load_live_bank(Path(sys.argv[1]), Path(sys.argv[2]))  # as a predictor's worker loads
print(live.bank.n_generic, flush=True)
sys.stdin.read()
"""


def with_generic_models(root: Path) -> Path:
    """A compilable model and a random forest (scored by a worker process)."""
    rng = np.random.default_rng(5)
    frame = profile_frame(random_profiles(rng, 200))
    labels = (frame["local_hour"] < 8).to_numpy() ^ (rng.random(200) < 0.2)
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    forest.fit(frame[["local_hour", "local_weekday"]], labels)
    models = {"lin": fitted_pipeline(0), "rf": forest}
    return write_model_directory(root, models)


def test_sigkill_of_a_serving_process_leaves_no_fork_server_or_generic_worker(
    tmp_path: Path,
) -> None:
    models = with_generic_models(tmp_path / "models")
    command = [sys.executable, "-c", BANK_HOLDER, str(models), str(tmp_path / "cache")]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"1"  # loaded: its pool worker is up
        tree = descendants(proc.pid)
        lines = [" ".join(p.cmdline()) for p in tree]
        assert sum("clickrouter.serving.pool" in line for line in lines) == 1, lines
        assert sum("forkserver" in line for line in lines) == 1, lines
        assert survivors(sigkill_and_collect(proc, tree), timeout=10) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
