"""What happens after each replayed decision: the sale, its delay, and the record it becomes.

A click with a sale inside the attribution window becomes a label-1 record
when the sale arrives; any other click a label-0 record when its window
closes (a sale after the window is lost to the join, as in the consumer).
The record reaches the dataset ``label_delay`` later (the consumer's
lateness and hold). Records are the consumer's: :data:`RECORD_SCHEMA`, one
per click, naming the offer shown (``campaign_id`` and ``landing_page_id``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from clickrouter.datastore import DataManager, as_records

READY = "_ready"  # simulated time at which a record is in the dataset


class PendingRecords:
    """Records whose labels are not in the dataset yet; committed when their time comes."""

    def __init__(self, data: DataManager) -> None:
        self.data = data
        self._pending: list[pa.Table] = []
        self.committed = 0

    def add(self, columns: dict[str, Any], ready: np.ndarray) -> None:
        table = pa.table({**columns, READY: ready})
        self._pending.append(table)

    def commit_until(self, now: float) -> int:
        """Commit every record ready by ``now`` (one dataset commit); return how many."""
        if not self._pending:
            return 0
        table = pa.concat_tables(self._pending)
        ready = table.column(READY).to_numpy() <= now
        self._pending = [table.filter(pa.array(~ready))]
        due = table.filter(pa.array(ready)).drop_columns([READY])
        if due.num_rows:
            records = as_records(due)  # without a landing_page_id: the default page
            self.data.commit(records, source={"replay": self.data.manifest().generation + 1})
            self.committed += due.num_rows
        return int(due.num_rows)


def record_columns(
    click_ids: np.ndarray,
    campaign_ids: np.ndarray,
    page_ids: np.ndarray,
    ts: np.ndarray,
    canonical: dict[str, Any],
    label: np.ndarray,
    revenue: np.ndarray,
    sale_ts: np.ndarray,
    propensity: np.ndarray,
    version: str,
) -> dict[str, Any]:
    """The RECORD_SCHEMA columns of a batch of clicks (``sale_ts`` NaN: no sale);
    ``campaign_ids`` and ``page_ids`` name the offer each click was sent to."""
    return {
        "click_id": pa.array(click_ids, pa.string()),
        "campaign_id": pa.array(campaign_ids, pa.string()),
        "landing_page_id": pa.array(page_ids, pa.string()),
        "ts": pa.array(ts, pa.float64()),
        **{name: pa.array(canonical[name]) for name in canonical},
        "label": pa.array(label, pa.int8()),
        "revenue": pa.array(revenue, pa.float64()),
        "sale_ts": pa.array(sale_ts, pa.float64(), from_pandas=True),
        "propensity": pa.array(propensity, pa.float64()),
        "model_version": pa.array(np.full(len(ts), version, dtype=object), pa.string()),
    }
