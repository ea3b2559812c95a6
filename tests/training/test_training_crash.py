"""SIGKILL in the middle of a cycle: CURRENT stays on a complete version, the next cycle works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clickrouter.datastore import DataManager
from clickrouter.modelstore import ModelStore
from clickrouter.serving.bank import ModelBank
from clickrouter.training import TrainingManager, TrainingSettings

N_CAMPAIGNS = 150


def _train_command(data: Path, store: Path, catalog: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clickrouter.cli",
        "train",
        "--data",
        str(data),
        "--store",
        str(store),
        "--catalog",
        str(catalog),
        "--workers",
        "0",
        "--quiet",
    ]


def _split(frame: Any, ids: list[str]) -> dict[str, Any]:
    """The rows of one big frame dealt out to ``ids`` (same truth for all)."""
    return {cid: frame.iloc[i :: len(ids)] for i, cid in enumerate(ids)}


def _kill_while_staging(command: list[str], store: Path) -> bool:
    """Start a cycle, SIGKILL it once it has begun writing a version; True if killed."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            staged = list((store / "tmp").glob("*/*.joblib")) if (store / "tmp").is_dir() else []
            if len(staged) > 5:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_mid_cycle_leaves_a_complete_current_version(
    tmp_path: Path, world: Any, write_datasets: Any, catalog_file: Any
) -> None:
    data, store_dir = tmp_path / "data", tmp_path / "store"
    ids = [f"c{i:03d}" for i in range(N_CAMPAIGNS)]
    world.add_campaign("c000", 0.05)
    write_datasets(data, _split(world.records("c000", 60 * N_CAMPAIGNS), ids))
    catalog = catalog_file(tmp_path / "campaigns.json", ids)
    settings = TrainingSettings(workers=0)
    first = TrainingManager(DataManager(data), store_dir, catalog, settings).run_cycle()
    # new data everywhere: the next cycle rewrites every model
    write_datasets(data, _split(world.records("c000", 20 * N_CAMPAIGNS, start=1.78e9), ids), "1")

    assert _kill_while_staging(_train_command(data, store_dir, catalog), store_dir)
    store = ModelStore(store_dir)
    assert store.current() == first.version
    assert list((store_dir / "tmp").iterdir()), "the kill should leave a half-staged version"
    assert store.verify(first.version) == []
    with ModelBank.from_directory(store.current_path()) as bank:
        assert len(bank.campaign_ids) == N_CAMPAIGNS

    after = TrainingManager(DataManager(data), store_dir, catalog, settings).run_cycle()
    assert after.published and after.trained == N_CAMPAIGNS and after.failed == 0
    assert store.current() == after.version != first.version
    assert store.verify(after.version) == []
    assert not list((store_dir / "tmp").iterdir())
