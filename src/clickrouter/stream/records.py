"""Labelled clicks -> an Arrow table in the dataset's record schema."""

from __future__ import annotations

import pyarrow as pa

from clickrouter.datastore.schema import RECORD_SCHEMA
from clickrouter.stream.attribution import Record


def records_table(records: list[Record]) -> pa.Table:
    """One row per ``(click, label, revenue, sale_ts)``; shape (len(records), 15)."""
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
    }
    return pa.Table.from_pydict(columns, schema=RECORD_SCHEMA)
