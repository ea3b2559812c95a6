"""Labelled clicks -> an Arrow table in the dataset's record schema.

:func:`labelled_records` is what the consumer uses (rows of click blocks);
:func:`records_table` builds the same from event objects (tests, tools).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from clickrouter.datastore import RECORD_SCHEMA
from clickrouter.events import ClickEvent
from clickrouter.stream.blocks import ClickBlock

# one labelled click: (click, label, revenue, sale_ts)
Record = tuple[ClickEvent, int, float, float | None]


def records_table(records: list[Record]) -> pa.Table:
    """One row per ``(click, label, revenue, sale_ts)``; shape (len(records), 16)."""
    clicks = [r[0] for r in records]
    profiles = [c.profile for c in clicks]
    columns = {
        "click_id": [c.click_id for c in clicks],
        "campaign_id": [c.campaign_id for c in clicks],
        "ts": [c.ts for c in clicks],
        "country": [p.country for p in profiles],
        "device": [p.device for p in profiles],
        "os": [p.os for p in profiles],
        "browser": [p.browser for p in profiles],
        "provider": [p.provider for p in profiles],
        "local_hour": [p.local_hour for p in profiles],
        "local_weekday": [p.local_weekday for p in profiles],
        "label": [r[1] for r in records],
        "revenue": [r[2] for r in records],
        "sale_ts": [r[3] for r in records],
        "propensity": [c.propensity for c in clicks],
        "model_version": [c.model_version for c in clicks],
        "landing_page_id": [c.landing_page_id for c in clicks],
    }
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)


def labelled_records(
    positives: list[tuple[ClickBlock, int, float, float]],
    negatives: list[tuple[ClickBlock, np.ndarray]],
) -> pa.Table:
    """One ``take`` over every block involved (a take per block pays its overhead per block)."""
    n_neg = sum(len(rows) for _, rows in negatives)
    if not positives and not n_neg:
        return RECORD_SCHEMA.empty_table()
    start: dict[int, int] = {}  # id(block) -> its first row in the concatenation
    tables: list[pa.Table] = []
    total = 0
    for block in [b for b, _ in negatives] + [p[0] for p in positives]:
        if id(block) not in start:
            start[id(block)] = total
            total += block.table.num_rows
            tables.append(block.table)
    index = [rows + start[id(b)] for b, rows in negatives if len(rows)]
    index.append(np.array([start[id(p[0])] + p[1] for p in positives], dtype=np.int64))
    # one chunk first: this pyarrow's take over a 35-chunk table cost 0.09-0.14 s
    # for 300,000 rows, against 0.01-0.02 s (plus ~0.01 s to combine) on one chunk
    clicks = pa.concat_tables(tables).combine_chunks().take(pa.array(np.concatenate(index)))
    n_pos = len(positives)
    label = np.zeros(n_neg + n_pos, dtype=np.int8)
    label[n_neg:] = 1
    revenue = np.zeros(n_neg + n_pos, dtype=np.float64)
    revenue[n_neg:] = [p[2] for p in positives]
    sale_ts = pa.array([None] * n_neg + [p[3] for p in positives], pa.float64())
    columns = {"label": pa.array(label), "revenue": pa.array(revenue), "sale_ts": sale_ts}
    arrays = [columns[n] if n in columns else clicks.column(n) for n in RECORD_SCHEMA.names]
    return pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)
