"""SIGKILL `clickrouter train` while its workers fit: none of its processes survives it.

A surviving pool worker would hold memory and, inherited through fork, the model
store's writer lock: the next trainer would find the store busy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from clickrouter.modelstore import ModelStore
from process_support import (
    busiest_thread_seconds,
    descendants,
    sigkill_and_collect,
    survivors,
    wait_until,
)

N_CAMPAIGNS = 120
FITTING_CPU_SECONDS = 0.3  # a worker thread past this has been fitting, not starting


@pytest.fixture
def training_set(tmp_path: Path, world: Any, write_datasets: Any, catalog_file: Any) -> list[str]:
    """A dataset whose cycle fits for several seconds on two workers."""
    ids = [f"c{i:03d}" for i in range(N_CAMPAIGNS)]
    world.add_campaign("c000", 0.08)
    frame = world.records("c000", 100 * N_CAMPAIGNS)
    write_datasets(tmp_path / "data", {c: frame.iloc[i :: len(ids)] for i, c in enumerate(ids)})
    catalog = catalog_file(tmp_path / "campaigns.json", ids)
    command = [sys.executable, "-m", "clickrouter.cli", "train", "--data", str(tmp_path / "data")]
    command += ["--store", str(tmp_path / "store"), "--catalog", str(catalog), "--quiet"]
    return [*command, "--min-positives", "3"]  # logistic fits: seconds of work per worker


def fitting_workers(pid: int, *, skip_main: bool) -> list[psutil.Process]:
    """The trainer's descendants that are busy fitting."""
    return [
        p
        for p in descendants(pid)
        if busiest_thread_seconds(p, skip_main=skip_main) > FITTING_CPU_SECONDS
    ]


def kill_mid_fit(command: list[str], *, skip_main: bool, timeout: float) -> list[str]:
    """Run the trainer, SIGKILL it once two workers fit; the processes that outlive it."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def fitting_or_ended() -> bool:
            return (
                len(fitting_workers(proc.pid, skip_main=skip_main)) >= 2 or proc.poll() is not None
            )

        wait_until(fitting_or_ended, timeout, "two workers fitting")
        assert proc.poll() is None, "the cycle ended before the kill"
        tree = sigkill_and_collect(proc, descendants(proc.pid))
        assert len(tree) >= 2
        return survivors(tree, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def assert_store_free(store: Path) -> None:
    """Nothing published, and the writer lock is free for the next trainer."""
    assert ModelStore(store).current() is None
    with ModelStore(store).writer_lock():
        pass


def test_sigkill_leaves_no_pool_worker(tmp_path: Path, training_set: list[str]) -> None:
    # pool workers fit in their main thread (a forked copy of the trainer's)
    left = kill_mid_fit([*training_set, "--workers", "2"], skip_main=False, timeout=120)
    assert left == []
    assert_store_free(tmp_path / "store")


def test_sigkill_leaves_no_dask_worker_of_a_local_cluster(
    tmp_path: Path, training_set: list[str]
) -> None:
    pytest.importorskip("distributed")
    # a Dask worker fits in a thread of its own; its main thread runs the worker
    command = [*training_set, "--workers", "2", "--dask-scheduler", "local"]
    left = kill_mid_fit(command, skip_main=True, timeout=180)
    assert left == []
    assert_store_free(tmp_path / "store")
