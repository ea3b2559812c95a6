"""DataManager: labelled records into self-contained, hive-partitioned Parquet datasets.

Public names load lazily, so importing :mod:`clickrouter.datastore.schema`
(the record schema, all a decode worker needs) does not pay for pandas and
``pyarrow.dataset`` (a third of a second at each worker's start). Datasets are
Parquet: any module of this package raises
:class:`~clickrouter.extras.MissingExtra` when pyarrow (the ``consume`` and
``train`` extras) is not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clickrouter.extras import require_extra

require_extra("consume", "clickrouter.datastore", modules=("pyarrow",))

if TYPE_CHECKING:
    from clickrouter.datastore.manager import DataManager
    from clickrouter.datastore.schema import PARTITION_COLUMNS, RECORD_COLUMNS, RECORD_SCHEMA

_LAZY = {
    "DataManager": "clickrouter.datastore.manager",
    "PARTITION_COLUMNS": "clickrouter.datastore.schema",
    "RECORD_COLUMNS": "clickrouter.datastore.schema",
    "RECORD_SCHEMA": "clickrouter.datastore.schema",
}
__all__ = ["PARTITION_COLUMNS", "RECORD_COLUMNS", "RECORD_SCHEMA", "DataManager"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clickrouter.datastore' has no attribute {name!r}")
