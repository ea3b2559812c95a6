"""DataManager: labelled records into self-contained, hive-partitioned Parquet datasets.

Public names load lazily, so importing :mod:`clickrouter.datastore.schema`
(the record schema, all a decode worker needs) does not pay for pandas and
``pyarrow.dataset`` (a third of a second at each worker's start). Datasets are
Parquet: any module of this package raises
:class:`~clickrouter.extras.MissingExtra` when pyarrow (the ``consume`` and
``train`` extras) is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.extras import require_extra
from clickrouter.lazy import lazy_exports

require_extra("consume", "clickrouter.datastore", modules=("pyarrow",))

if TYPE_CHECKING:
    from clickrouter.datastore.ids import is_safe_campaign_id
    from clickrouter.datastore.manager import DataManager
    from clickrouter.datastore.schema import (
        PAGE_COLUMN,
        PARTITION_COLUMNS,
        RECORD_COLUMNS,
        RECORD_SCHEMA,
        as_records,
        with_page_ids,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "DataManager": "clickrouter.datastore.manager",
        "is_safe_campaign_id": "clickrouter.datastore.ids",
        "PAGE_COLUMN": "clickrouter.datastore.schema",
        "PARTITION_COLUMNS": "clickrouter.datastore.schema",
        "RECORD_COLUMNS": "clickrouter.datastore.schema",
        "RECORD_SCHEMA": "clickrouter.datastore.schema",
        "as_records": "clickrouter.datastore.schema",
        "with_page_ids": "clickrouter.datastore.schema",
    },
)
__all__ = [
    "PAGE_COLUMN",
    "PARTITION_COLUMNS",
    "RECORD_COLUMNS",
    "RECORD_SCHEMA",
    "DataManager",
    "as_records",
    "is_safe_campaign_id",
    "with_page_ids",
]
