"""The generic path: models that cannot be compiled, scored by worker processes.

Each worker owns a fixed shard of the models and loads them itself, so no
model is ever pickled across processes and there is no central queue: a
request goes to every worker over its own pipe, each scores its shard, and the
parent merges the columns. A model has one column per page of its campaign:
one that reads the page (:data:`~clickrouter.catalogue.PAGE_INPUT`) scores the
request frame once per page id, one that does not scores it once for all its
pages. A worker ends when its pipe closes or when the
process that started it ends. This is the design the original talk named as its
future work ("remove central queue"), and what the C++ version approximated.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import warnings
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clickrouter.catalogue import DEFAULT_PAGE_ID, PAGE_INPUT
from clickrouter.errors import ModelLoadError

_READY = "ready"


class WorkerPool:
    """Processes that each score a fixed shard of campaign models.

    Parameters
    ----------
    model_paths : list of model files, in the column order of the results.
    workers : number of processes (at most one per model).
    pages : each model's page ids, one result column each, in order
        (default: one page per model).
    """

    def __init__(
        self, model_paths: list[Path], workers: int, pages: list[tuple[str, ...]] | None = None
    ) -> None:
        self.model_paths = list(model_paths)
        self.pages = list(pages) if pages is not None else [(DEFAULT_PAGE_ID,)] * len(model_paths)
        if len(self.pages) != len(self.model_paths):
            raise ValueError("pages: expected one tuple of page ids per model")
        n_workers = max(1, min(workers, len(self.model_paths)))
        self.shards_ = [list(range(k, len(model_paths), n_workers)) for k in range(n_workers)]
        # the result columns of each model, and of each shard (its models' in order)
        starts = np.cumsum([0] + [len(p) for p in self.pages])
        self.n_columns = int(starts[-1])
        self.shard_columns_ = [
            np.concatenate([np.arange(starts[i], starts[i + 1]) for i in shard]).astype(np.intp)
            for shard in self.shards_
        ]
        self._lock = threading.Lock()  # one request in flight per pipe
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        self._start()

    def _start(self) -> None:
        # A fresh interpreter per worker (not fork: the parent may run threads;
        # not multiprocessing's spawn: it re-imports the caller's __main__).
        for shard in self.shards_:
            parent, child = socket.socketpair()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clickrouter.serving.pool",
                    str(child.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(child.fileno(),),
            )
            child.close()
            pipe = Connection(parent.detach())
            pipe.send([(str(self.model_paths[i]), list(self.pages[i])) for i in shard])
            self._pipes.append(pipe)
            self._procs.append(proc)
        for pipe in self._pipes:
            try:
                status = pipe.recv()
            except EOFError:
                status = "worker exited during start-up"
            if status != _READY:
                self.close()
                raise ModelLoadError(f"generic worker failed to start: {status}")

    def predict(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """P(sale) of every pooled offer; shape (n_profiles, n_columns), model by model."""
        out = np.empty((len(profiles), self.n_columns), dtype=np.float64)
        with self._lock:
            for pipe in self._pipes:
                pipe.send(profiles)
            for pipe, columns in zip(self._pipes, self.shard_columns_, strict=True):
                reply = pipe.recv()
                if isinstance(reply, str):
                    raise RuntimeError(f"generic worker failed: {reply}")
                out[:, columns] = reply
        return out

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
                pipe.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._pipes, self._procs = [], []

    def __del__(self) -> None:
        if self._procs:
            self.close()


def _serve_shard(pipe: Connection) -> None:
    """Worker main loop: load the shard sent first, then score each batch until None."""
    from clickrouter.profile import profile_frame
    from clickrouter.serving.compiler import tolerate_unknown
    from clickrouter.serving.loading import load_model, model_columns

    try:
        shard = [(load_model(Path(path)), tuple(pages)) for path, pages in pipe.recv()]
        for model, _ in shard:
            tolerate_unknown(model)
    except Exception as exc:
        pipe.send(f"{type(exc).__name__}: {exc}")
        return
    scorers = [_Scorer(model, model_columns(model), pages) for model, pages in shard]
    pipe.send(_READY)
    while (profiles := _next_request(pipe)) is not None:
        try:
            frame = profile_frame(profiles)
            pipe.send(np.hstack([scorer.score(frame) for scorer in scorers]))
        except Exception as exc:  # report, keep serving the next request
            pipe.send(f"{type(exc).__name__}: {exc}")


def _next_request(pipe: Connection) -> Any:
    """The next batch of profiles; None when told to stop or the parent closed the pipe."""
    try:
        return pipe.recv()
    except (EOFError, OSError):
        return None


class _Scorer:
    """One pooled model and the page ids of its campaign's offers."""

    def __init__(self, model: Any, columns: list[str], pages: tuple[str, ...]) -> None:
        self.model = model
        self.columns = columns
        self.pages = pages
        self.reads_page = PAGE_INPUT in columns

    def score(self, frame: Any) -> np.ndarray:
        """P(sale) of each offer for each row of the profile frame; (n_rows, n_pages)."""
        out = np.empty((len(frame), len(self.pages)), dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # unseen categories are expected
            if not self.reads_page:
                out[:] = self.model.predict_proba(frame[self.columns])[:, 1:2]
                return out
            # every page in one call: sklearn's per-call overhead dominates small frames
            paged = pd.concat([frame.assign(**{PAGE_INPUT: page}) for page in self.pages])
            proba = self.model.predict_proba(paged[self.columns])[:, 1]
        out[:] = proba.reshape(len(self.pages), len(frame)).T
        return out


if __name__ == "__main__":
    from clickrouter.processes import exit_with_parent

    exit_with_parent(int(sys.argv[2]))  # also mid-request, and whichever thread started it
    _serve_shard(Connection(int(sys.argv[1])))
