"""The trainer's view of the dataset, sized for thousands of campaigns of tiny data.

Wraps the :class:`~clickrouter.datastore.manager.DataManager` (same committed
manifest, same files) and adds what the TrainingManager looks for but the
DataManager does not offer yet, measured at 5,000 campaigns on this machine:

* ``data_versions()``: every campaign's version from one manifest read. The
  TrainingManager calls it when present; otherwise it calls
  ``data_version(c)`` per campaign, which re-reads the manifest each time
  (5,000 reads: 17 s of an 38 s cycle).
* ``read_all``: one multi-file Arrow scan of the manifest's files instead of
  one dataset per file (thousands of small files: 5.4 s -> 2.9 s measured);
* ``read_training_set``: served from that scan (cached per manifest
  generation and window), instead of a manifest read and a per-file scan per
  campaign (700 campaigns: 15 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from clickrouter.datastore.manager import DataManager
from clickrouter.datastore.partition import FILE_SCHEMA
from clickrouter.datastore.schema import RECORD_COLUMNS, RECORD_SCHEMA

_ATTEMPTS = 5


class FastTrainingData:
    """:class:`~clickrouter.training.data.TrainingData` over a DataManager."""

    def __init__(self, manager: DataManager) -> None:
        self.manager = manager
        self._cache: tuple[Any, pd.DataFrame, dict[str, tuple[int, int]]] | None = None

    def campaigns(self) -> list[str]:
        return self.manager.campaigns()

    def data_version(self, campaign_id: str) -> str:
        return self.manager.data_version(campaign_id)

    def data_versions(self) -> dict[str, str]:
        """The DataManager's ``data_version`` of every campaign, from one manifest."""
        campaigns = self.manager.manifest().campaigns
        return {cid: f"{info.changed_at}-{info.rows}" for cid, info in campaigns.items()}

    def read_training_set(self, campaign_id: str, start: Any = None, end: Any = None) -> Any:
        """One campaign's records, by ts (a slice of the cached scan of every campaign)."""
        frame, bounds = self._by_campaign(start, end)
        lo, hi = bounds.get(campaign_id, (0, 0))
        return frame.iloc[lo:hi].reset_index(drop=True)

    def _by_campaign(self, start: Any, end: Any) -> tuple[pd.DataFrame, dict[str, tuple[int, int]]]:
        # one scan per training window: a cycle asks for every campaign with the same
        # (start, end), and the next cycle's end (its cut-off time) is a new key
        key = (start, end)
        if self._cache is None or self._cache[0] != key:
            frame = self.read_all(start, end)
            frame = frame.sort_values(["campaign_id", "ts", "click_id"], kind="stable")
            frame = frame.reset_index(drop=True)
            self._cache = (key, frame, _bounds(frame["campaign_id"].to_numpy()))
        return self._cache[1], self._cache[2]

    def read_all(self, start: Any = None, end: Any = None) -> Any:
        for _ in range(_ATTEMPTS):
            try:
                table = self._scan(start, end)
            except FileNotFoundError:
                continue  # compaction replaced a file between manifest and read
            if table is None:  # unexpected layout: the DataManager's own path
                return self.manager.read_all(start, end)
            return table.to_pandas()
        return self.manager.read_all(start, end)

    def _scan(self, start: Any, end: Any) -> pa.Table | None:
        files = self.manager.manifest().files
        if not files:
            return RECORD_SCHEMA.empty_table()
        paths = [str(self.manager.root / f.path) for f in files]
        table = ds.dataset(paths, schema=FILE_SCHEMA, format="parquet").to_table()
        rows = np.array([f.rows for f in files])
        if table.num_rows != rows.sum() or not _in_file_order(table, files, rows):
            return None
        ids = np.repeat(np.array([f.campaign_id for f in files], dtype=object), rows)
        table = table.append_column("campaign_id", pa.array(ids, pa.string()))
        mask = _time_mask(table, start, end)
        if mask is not None:
            table = table.filter(mask)
        table = table.select(list(RECORD_COLUMNS)).cast(RECORD_SCHEMA)
        return table.sort_by([("ts", "ascending"), ("click_id", "ascending")])


def _bounds(ids: np.ndarray) -> dict[str, tuple[int, int]]:
    """Row range of each campaign in ``ids`` (sorted by campaign)."""
    if not len(ids):
        return {}
    edges = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(ids)]
    return {str(ids[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


def _in_file_order(table: pa.Table, files: list[Any], rows: np.ndarray) -> bool:
    """Whether the scan kept the files' order (each file's rows within its ts range)."""
    ts = table["ts"].to_numpy()
    starts = np.r_[0, np.cumsum(rows)[:-1]]
    nonempty = rows > 0
    low = np.minimum.reduceat(ts, starts[nonempty]) if len(ts) else np.zeros(0)
    high = np.maximum.reduceat(ts, starts[nonempty]) if len(ts) else np.zeros(0)
    lo = np.array([f.min_ts for f in files])[nonempty]
    hi = np.array([f.max_ts for f in files])[nonempty]
    return bool(np.all(low >= lo) and np.all(high <= hi))


def _time_mask(table: pa.Table, start: Any, end: Any) -> Any:
    mask = None
    if start is not None:
        mask = pc.greater_equal(table["ts"], float(start))
    if end is not None:
        upper = pc.less(table["ts"], float(end))
        mask = upper if mask is None else pc.and_(mask, upper)
    return mask
