"""Cut one cycle's records into per-campaign fitting tasks, and tasks into chunks.

Per campaign, rows are put in time order; the newest ``holdout_fraction`` of
them form the evaluation slice (kept whole); every positive and a random
``rate`` share of the negatives are kept for fitting. The draw is seeded by
the campaign id, so a cycle is reproducible. Each task also says which
landing page each of its rows went to, and the sales and exposure of each
page (:class:`~clickrouter.training.fitting.PageRows`).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from clickrouter.catalogue import DEFAULT_PAGE_ID
from clickrouter.datastore import PAGE_COLUMN
from clickrouter.training.design import positions
from clickrouter.training.fitting import CampaignTask, PageRows
from clickrouter.training.late import Feedback
from clickrouter.training.settings import TrainingSettings


def campaign_tasks(
    frame: pd.DataFrame,
    cols: np.ndarray,
    campaign_ids: list[str],
    settings: TrainingSettings,
    served: dict[str, Path],
    served_records: dict[str, Any] | None = None,
    feedback: Feedback | None = None,
    pages: dict[str, tuple[str, ...]] | None = None,
) -> list[CampaignTask]:
    """One task per id of ``campaign_ids`` (an id without rows gets an empty task).

    ``served_records``: the served version's manifest records, for the C its
    logistic models chose and on how many sales (see ``c_regrid_growth``).
    ``feedback``: late sales and exposure per row of ``frame`` (None: none,
    every row an exposure of one). ``pages``: each campaign's landing page
    ids in catalogue order (a campaign not in it: the one page ``default``).
    """
    records = served_records or {}
    catalogue = pages or {}
    page_codes, page_names = _page_codes(frame)
    codes = positions(frame["campaign_id"], campaign_ids)
    ts = frame["ts"].to_numpy(dtype=np.float64)
    labels = frame["label"].to_numpy(dtype=np.int8)
    if feedback is None:
        feedback = Feedback(np.zeros(len(frame), np.int8), np.ones(len(frame)))
    order = np.lexsort((ts, codes))
    order = order[codes[order] >= 0]
    bounds = np.searchsorted(codes[order], np.arange(len(campaign_ids) + 1))
    tasks = []
    for k, cid in enumerate(campaign_ids):
        rows = order[bounds[k] : bounds[k + 1]]
        served_path = served.get(cid)
        listed = catalogue.get(cid, (DEFAULT_PAGE_ID,))
        ids, local = _page_index(listed, page_codes[rows], page_names)
        task = _task(cid, rows, cols, labels, settings, served_path, local)
        task.served_c, task.served_c_positives = _served_c(records.get(cid))
        _add_feedback(task, rows, feedback)
        _add_page_counts(task, ids, len(listed), local, labels[rows], feedback, rows)
        tasks.append(task)
    return tasks


def _page_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per row of ``frame``, its landing page as an index into the page ids returned."""
    if PAGE_COLUMN not in frame:  # a data source from before pages
        return np.zeros(len(frame), dtype=np.int32), [DEFAULT_PAGE_ID]
    column = pa.array(frame[PAGE_COLUMN], type=pa.string(), from_pandas=True)
    if isinstance(column, pa.ChunkedArray):  # an Arrow-backed column: one dictionary for all
        column = column.combine_chunks()
    encoded = column.fill_null(DEFAULT_PAGE_ID).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, list(encoded.dictionary.to_pylist())


def _page_index(
    catalogue: tuple[str, ...], codes: np.ndarray, names: list[str]
) -> tuple[tuple[str, ...], np.ndarray]:
    """A campaign's page ids (the catalogue's, then the other ones its rows name,
    sorted) and each row's index into them; ``codes``: the rows' global codes."""
    seen = np.unique(codes)
    listed = set(catalogue)
    ids = catalogue + tuple(sorted({names[c] for c in seen} - listed))
    where = {page: i for i, page in enumerate(ids)}
    lookup = np.array([where[names[c]] for c in seen], dtype=np.int32)
    return ids, lookup[np.searchsorted(seen, codes)]


def _add_page_counts(
    task: CampaignTask,
    ids: tuple[str, ...],
    listed: int,
    local: np.ndarray,
    labels: np.ndarray,
    feedback: Feedback,
    rows: np.ndarray,
) -> None:
    """The task's page ids, and sales and exposure per page over the window and
    over its training part (``local``: each row's index into ``ids``)."""
    assert task.pages is not None
    n, train = len(ids), slice(0, task.train_rows)
    y = labels.astype(np.float64)
    late = feedback.late[rows].astype(np.float64)
    exposure = feedback.exposure[rows]
    pages = task.pages
    pages.ids, pages.listed = ids, listed
    pages.positives = np.bincount(local, weights=y, minlength=n)
    pages.late = np.bincount(local, weights=late, minlength=n)
    pages.exposure = np.bincount(local, weights=exposure, minlength=n)
    pages.train_sales = np.bincount(local[train], weights=(y[train] + late[train]), minlength=n)
    pages.train_exposure = np.bincount(local[train], weights=exposure[train], minlength=n)


def _add_feedback(task: CampaignTask, rows: np.ndarray, feedback: Feedback) -> None:
    train = rows[: task.train_rows]
    task.late_positives = int(feedback.late[rows].sum())
    task.train_late_positives = int(feedback.late[train].sum())
    task.exposure = float(feedback.exposure[rows].sum())
    task.train_exposure = float(feedback.exposure[train].sum())


def _served_c(record: Any) -> tuple[float | None, int]:
    """(C, sales it was chosen on) of a served logistic model's record, else (None, 0)."""
    if not isinstance(record, dict) or record.get("kind") != "logistic":
        return None, 0
    c, at = record.get("C"), record.get("c_chosen_at_positives")
    if not isinstance(c, int | float) or c <= 0 or not isinstance(at, int) or at <= 0:
        return None, 0  # older manifests did not record it: choose again
    return float(c), at


def _task(
    cid: str,
    rows: np.ndarray,
    cols: np.ndarray,
    labels: np.ndarray,
    settings: TrainingSettings,
    served: Path | None,
    page_of: np.ndarray,
) -> CampaignTask:
    y = labels[rows]
    split = len(rows) - math.ceil(len(rows) * settings.holdout_fraction) if len(rows) > 1 else 0
    rate = sampling_rate(int((y == 0).sum()), settings)
    rng = np.random.default_rng([settings.seed, zlib.crc32(cid.encode())])
    keep = (y == 1) | (rng.random(len(rows)) < rate)
    if int(y.sum()) < settings.logistic_min_positives and settings.learner != "hierarchical":
        # a base-rate campaign: counts and the held-out slice are enough (the
        # hierarchical learner's also weighs its kept rows by the shared effects)
        keep[:] = False
    kept = rows[keep]
    hold = rows[split:]
    return CampaignTask(
        campaign_id=cid,
        cols=np.ascontiguousarray(cols[kept]),
        labels=np.ascontiguousarray(y[keep]),
        split=int(keep[:split].sum()),
        hold_cols=np.ascontiguousarray(cols[hold]),
        hold_labels=np.ascontiguousarray(labels[hold]),
        rate=rate,
        rows=len(rows),
        positives=int(y.sum()),
        train_rows=split,
        train_positives=int(y[:split].sum()),
        served_model=str(served) if served is not None else None,
        pages=PageRows(kept=page_of[keep], hold=page_of[split:]),
    )


def sampling_rate(negatives: int, settings: TrainingSettings) -> float:
    """Negative keep rate: the configured one, raised so at least min_negatives remain."""
    if negatives <= settings.min_negatives:
        return 1.0
    return min(1.0, max(settings.negative_rate, settings.min_negatives / negatives))


def pooled_rate(tasks: list[CampaignTask], settings: TrainingSettings) -> float:
    """Sale rate pooled over the thin campaigns (the ones that get a base-rate model)."""
    thin = [t for t in tasks if t.positives < settings.min_positives] or tasks
    exposure = sum(t.exposure for t in thin)
    if exposure == 0:
        return settings.cold_start_rate
    return (sum(t.positives + t.late_positives for t in thin) + 0.5) / (exposure + 1.0)


def chunked(tasks: list[CampaignTask], workers: int) -> list[list[CampaignTask]]:
    """Chunks of similar total size, biggest campaigns first (keeps workers busy)."""
    size = [len(t.labels) + len(t.hold_labels) + 50 for t in tasks]
    order = np.argsort(size)[::-1]
    target = max(2_000, sum(size) // max(1, 4 * workers))
    chunks: list[list[CampaignTask]] = [[]]
    load = 0
    for i in order:
        if load and load + size[i] > target:
            chunks.append([])
            load = 0
        chunks[-1].append(tasks[i])
        load += size[i]
    return [c for c in chunks if c]
