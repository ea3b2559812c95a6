"""Where per-campaign fits run: inline, local worker processes, or a Dask cluster.

Fits are independent, so an executor only maps :func:`fit_chunk` over chunks
of campaigns and yields each chunk's results as soon as it is done (for the
progress bar). The per-cycle settings travel once per chunk (local) or are
broadcast once to every worker (Dask); the chunks' arrays are pickled as
contiguous numpy buffers.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol

from clickrouter.errors import ClickrouterError
from clickrouter.extras import import_optional
from clickrouter.processes import die_with_parent
from clickrouter.training.fitting import CampaignTask, FitResult, FitSettings, fit_chunk

LOCAL_CLUSTER = "local"  # the Dask "address" of a cluster the executor starts itself


class Executor(Protocol):
    workers: int

    def run(
        self, settings: FitSettings, chunks: list[list[CampaignTask]]
    ) -> Iterator[list[FitResult]]: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Runs every chunk in the calling process (workers=0: tests, debugging)."""

    workers = 1

    def run(
        self, settings: FitSettings, chunks: list[list[CampaignTask]]
    ) -> Iterator[list[FitResult]]:
        for chunk in chunks:
            yield fit_chunk(settings, chunk)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A pool of local worker processes, forked and started before any fit is sent.

    fork, not spawn/forkserver: a fresh interpreter re-imports numpy, scipy,
    sklearn and the caller's main module (seconds per worker on a loaded
    machine), while a forked child has them already. The workers are started
    here, eagerly, before the caller starts other threads (the progress bar),
    so no thread's lock is ever copied into a child mid-use.

    Each worker dies with the process that made the pool (the kernel's
    parent-death signal): a SIGKILLed trainer leaves no worker behind holding
    memory or, inherited through fork, the model store's writer lock. The
    workers are all forked by the thread that starts the pool, here, and that
    thread also shuts it down, so it outlives them as the signal requires.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        context = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )
        list(self._pool.map(_ready, range(self.workers)))

    def run(
        self, settings: FitSettings, chunks: list[list[CampaignTask]]
    ) -> Iterator[list[FitResult]]:
        futures = [self._pool.submit(fit_chunk, settings, chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Per-campaign fits on a Dask distributed cluster at ``address`` (tcp://host:port).

    ``address="local"`` starts a cluster of this process's own for the cycle:
    a scheduler and one nanny per worker in this process, each nanny's worker
    in a process of its own (``workers`` of them, one thread each). A Dask
    worker process ends when the pipe its nanny holds open closes, so the
    workers end with this process however it ends.
    """

    def __init__(self, address: str, *, timeout: float = 30.0, workers: int | None = None) -> None:
        self._cluster: Any = None
        if address == LOCAL_CLUSTER:
            self._cluster = _local_cluster(workers)
            address = self._cluster.scheduler_address
        try:
            self._client: Any = _distributed().Client(
                address, timeout=timeout, set_as_default=False
            )
        except OSError as exc:
            raise ClickrouterError(
                f"cannot reach the Dask scheduler at {address!r}: {exc}", status=503
            ) from None
        self.workers = max(1, sum(self._client.nthreads().values()))

    def run(
        self, settings: FitSettings, chunks: list[list[CampaignTask]]
    ) -> Iterator[list[FitResult]]:
        client = self._client
        shared = client.scatter(settings, broadcast=True)
        data = client.scatter(chunks)  # straight to workers, not through the scheduler
        futures = [client.submit(fit_chunk, shared, chunk, pure=False) for chunk in data]
        try:
            for future in _distributed().as_completed(futures, loop=client.loop):
                yield future.result()
        finally:
            client.cancel(futures)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _start_worker(parent: int) -> None:
    # a cycle runs with the collector paused (see TrainingManager.run_cycle), and a
    # forked worker inherits that: its fits run with the collector on as usual
    gc.enable()
    die_with_parent(parent)


def _ready(_: int) -> None:
    """No-op task: makes the pool start its worker processes now."""
    time.sleep(0.01)  # long enough that each task lands on a new worker


def _local_cluster(workers: int | None) -> Any:
    return _distributed().LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )


def _distributed() -> Any:
    """The ``distributed`` package, imported only when a cluster is asked for."""
    return import_optional("distributed", "train", "a dask cluster")


def make_executor(
    workers: int | None, dask_scheduler: str | None, dask_timeout: float = 30.0
) -> Executor:
    """Dask when a scheduler is given ("local": a cluster of ``workers`` processes of
    this process's own), else local processes (workers=0: inline)."""
    if dask_scheduler:
        return DaskExecutor(dask_scheduler, timeout=dask_timeout, workers=workers)
    if workers == 0:
        return InlineExecutor()
    return ProcessExecutor(workers)
