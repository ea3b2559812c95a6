"""The labelled-record schema shared by the DataManager (writer) and the trainer (reader).

One row per click whose label is settled: ``label`` 1 when its sale arrived
within the attribution window, 0 when the window closed without one. Datasets
are hive-partitioned ``campaign_id=<id>/date=<YYYY-MM-DD>/`` (``date`` is the
click's UTC day); ``campaign_id`` and ``date`` are partition columns, so they
are not stored inside the files.

``landing_page_id`` is the page of its campaign the click was sent to, so a
record is one offer's outcome. Records written before campaigns had several
pages have no such column: they were all sent to the campaign's one page,
``default``, and read so (:func:`with_page_ids`).
"""

from __future__ import annotations

import pyarrow as pa

from clickrouter.catalogue import DEFAULT_PAGE_ID
from clickrouter.profile import CATEGORICAL_FIELDS

PAGE_COLUMN = "landing_page_id"
# last, so that a table of an older layout gains it where the schema has it
_PAGE_FIELD = pa.field(PAGE_COLUMN, pa.string(), nullable=False)

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
        _PAGE_FIELD,
    ]
)
PARTITION_COLUMNS = ("campaign_id", "date")
RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)


def with_page_ids(table: pa.Table) -> pa.Table:
    """``table`` with ``landing_page_id`` filled in: ``default`` where it is null
    (a scan that met a file from before pages) or, when the column is absent, a
    column of ``default`` appended (the last column, as in the record schema)."""
    at = table.schema.get_field_index(PAGE_COLUMN)
    if at < 0:
        return table.append_column(_PAGE_FIELD, pa.repeat(DEFAULT_PAGE_ID, table.num_rows))
    column = table.column(at)
    if column.null_count == 0:
        return table
    return table.set_column(at, PAGE_COLUMN, column.fill_null(DEFAULT_PAGE_ID))


def as_records(table: pa.Table) -> pa.Table:
    """The record-schema table of ``table``'s columns (a producer that does not
    know pages leaves ``landing_page_id`` out: its clicks went to ``default``)."""
    return with_page_ids(table).select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
