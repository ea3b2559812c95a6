"""Several traffic seeds of one replay: in parallel processes when cores allow.

Each seed is independent (its own working directory, store, dataset and
policy stream), so seeds run in worker processes (``spawn``: no state
inherited from the parent); workers report progress through a queue that
the parent draws as one progress bar per seed. A worker stops at its next
batch when the parent asks (an interrupted or failed run) or is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from clickrouter.replay.loop import SeedRun, load_world, run_seed
from clickrouter.replay.settings import ReplaySettings

Progress = Callable[[int, int], None]  # (traffic seed, requests served so far)
_progress_queue: Any = None  # set in each worker process
_stop: Any = None  # an Event the parent sets to stop every worker
_parent = 0


class Stopped(Exception):
    """A worker's seed was abandoned: the parent stopped the run or died."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_seeds(
    settings: ReplaySettings,
    seeds: list[int],
    jobs: int,
    progress: Progress,
    scratch: Path | None = None,
) -> tuple[list[SeedRun], float]:
    """Every seed's run (in seed order) and the wall seconds they took together."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replay-", dir=scratch) as tmp:
        root = Path(tmp)
        if jobs <= 1 or len(seeds) == 1:
            world = load_world(settings)
            runs = [
                run_seed(settings, s, root / f"seed-{s}", _reporter(progress, s), world)
                for s in seeds
            ]
        else:
            runs = _in_processes(settings, seeds, jobs, progress, root)
    return runs, time.perf_counter() - started


def _reporter(progress: Progress, seed: int) -> Callable[[int], None]:
    return lambda served: progress(seed, served)


def _in_processes(
    settings: ReplaySettings, seeds: list[int], jobs: int, progress: Progress, root: Path
) -> list[SeedRun]:
    context = multiprocessing.get_context("spawn")
    updates = context.Queue()
    stop = context.Event()
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(seeds)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(updates, stop, os.getpid()),
    ) as pool:
        futures = [pool.submit(_worker, settings, s, root / f"seed-{s}") for s in seeds]
        try:
            while not all(f.done() for f in futures):
                _drain(updates, progress, timeout=0.2)
                _raise_failed(futures)
        except BaseException:
            stop.set()  # the running seeds stop at their next batch
            for future in futures:
                future.cancel()
            raise
        _drain(updates, progress, timeout=0.0)
        return [f.result() for f in futures]


def _raise_failed(futures: list[Future[SeedRun]]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            future.result()  # re-raises the worker's error here


def _drain(updates: Any, progress: Progress, timeout: float) -> None:
    try:
        seed, served = updates.get(timeout=timeout) if timeout else updates.get_nowait()
        progress(seed, served)
        while True:
            seed, served = updates.get_nowait()
            progress(seed, served)
    except queue.Empty:
        return


def _init_worker(updates: Any, stop: Any, parent: int) -> None:
    global _progress_queue, _stop, _parent
    _progress_queue, _stop, _parent = updates, stop, parent


def _worker(settings: ReplaySettings, seed: int, workdir: Path) -> SeedRun:
    last = [0.0]

    def report(served: int) -> None:
        if _stop.is_set() or os.getppid() != _parent:
            raise Stopped(f"seed {seed}: the replay was stopped")
        now = time.monotonic()
        if now - last[0] > 0.25:  # a few updates a second are enough for a bar
            last[0] = now
            _progress_queue.put((seed, served))

    run = run_seed(settings, seed, workdir, report)
    _progress_queue.put((seed, settings.total_clicks))
    return run
