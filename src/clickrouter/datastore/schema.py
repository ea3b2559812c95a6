"""The labelled-record schema shared by the DataManager (writer) and the trainer (reader).

One row per click whose label is settled: ``label`` 1 when its sale arrived
within the attribution window, 0 when the window closed without one. Datasets
are hive-partitioned ``campaign_id=<id>/date=<YYYY-MM-DD>/`` (``date`` is the
click's UTC day); ``campaign_id`` and ``date`` are partition columns, so they
are not stored inside the files.
"""

from __future__ import annotations

import pyarrow as pa

from clickrouter.profile import CATEGORICAL_FIELDS

RECORD_SCHEMA = pa.schema(
    [
        pa.field("click_id", pa.string(), nullable=False),
        pa.field("campaign_id", pa.string(), nullable=False),
        pa.field("ts", pa.float64(), nullable=False),  # click time, epoch seconds
        *(pa.field(name, pa.string(), nullable=False) for name in CATEGORICAL_FIELDS),
        pa.field("local_hour", pa.int8(), nullable=False),
        pa.field("local_weekday", pa.int8(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("revenue", pa.float64(), nullable=False),  # 0.0 when label == 0
        pa.field("sale_ts", pa.float64(), nullable=True),  # null when label == 0
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
    ]
)
PARTITION_COLUMNS = ("campaign_id", "date")
RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)
