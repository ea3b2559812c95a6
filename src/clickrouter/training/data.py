"""Where training data comes from: the small interface the trainer needs.

The trainer reads labelled records (:data:`clickrouter.datastore.schema.RECORD_SCHEMA`)
through :class:`TrainingData`, which the DataManager implements. Until then, and
for any dataset already laid out on disk, :class:`ParquetTrainingData` reads
the same hive layout ``campaign_id=<id>/date=<YYYY-MM-DD>/*.parquet`` directly.
"""

from __future__ import annotations

import hashlib
import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from clickrouter.datastore import RECORD_SCHEMA, with_page_ids
from clickrouter.errors import InvalidInput

_PARTITIONING = ds.partitioning(
    pa.schema([("campaign_id", pa.string()), ("date", pa.string())]), flavor="hive"
)
FILE_SCHEMA = pa.schema([f for f in RECORD_SCHEMA if f.name != "campaign_id"])
# the files' columns as the scan expects them, whatever file it opens first
_SCAN_SCHEMA = FILE_SCHEMA.append(pa.field("campaign_id", pa.string())).append(
    pa.field("date", pa.string())
)


@runtime_checkable
class TrainingData(Protocol):
    """Labelled records per campaign; times are epoch seconds (None = unbounded)."""

    def campaigns(self) -> list[str]: ...

    def data_version(self, campaign_id: str) -> Any: ...

    def read_training_set(
        self, campaign_id: str, start: Any = None, end: Any = None
    ) -> pd.DataFrame: ...

    def read_all(self, start: Any = None, end: Any = None) -> pd.DataFrame: ...


class ParquetTrainingData:
    """Reads a hive-partitioned labelled-record dataset rooted at ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InvalidInput(f"data directory {str(self.root)!r} does not exist")

    def campaigns(self) -> list[str]:
        prefix = "campaign_id="
        return sorted(
            p.name[len(prefix) :]
            for p in self.root.iterdir()
            if p.is_dir() and p.name.startswith(prefix)
        )

    def data_version(self, campaign_id: str) -> str:
        """Changes whenever a file of the campaign is added, replaced or removed."""
        digest = hashlib.sha256()
        for path in sorted(self._campaign_dir(campaign_id).rglob("*.parquet")):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return digest.hexdigest()[:16]

    def read_training_set(
        self, campaign_id: str, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        frame = self._read(self._campaign_dir(campaign_id), start, end, with_campaign=False)
        frame.insert(1, "campaign_id", campaign_id)
        return frame

    def read_all(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        return self._read(self.root, start, end, with_campaign=True)

    def _campaign_dir(self, campaign_id: str) -> Path:
        return self.root / f"campaign_id={campaign_id}"

    def _read(self, root: Path, start: Any, end: Any, *, with_campaign: bool) -> pd.DataFrame:
        if not root.is_dir():
            return _empty(with_campaign)
        schema = RECORD_SCHEMA if with_campaign else FILE_SCHEMA
        dataset = ds.dataset(
            root, schema=_SCAN_SCHEMA, format="parquet", partitioning=_PARTITIONING
        )
        table = dataset.to_table(columns=schema.names, filter=_time_filter(start, end))
        return with_page_ids(table).cast(schema).to_pandas()  # older files: no page ids


def _time_filter(start: Any, end: Any) -> Any:
    """Partition pruning on ``date`` plus the exact bound on ``ts``: start <= ts < end."""
    condition = None
    if start is not None:
        condition = (ds.field("date") >= _day(start)) & (ds.field("ts") >= float(start))
    if end is not None:
        upper = (ds.field("date") <= _day(end)) & (ds.field("ts") < float(end))
        condition = upper if condition is None else condition & upper
    return condition


def _day(epoch: Any) -> str:
    return datetime.fromtimestamp(float(epoch), tz=UTC).strftime("%Y-%m-%d")


def _empty(with_campaign: bool) -> pd.DataFrame:
    schema = RECORD_SCHEMA if with_campaign else FILE_SCHEMA
    return schema.empty_table().to_pandas()


def open_training_data(root: str | Path) -> TrainingData:
    """The DataManager over ``root`` when the datastore stage provides one."""
    manager_class = getattr(importlib.import_module("clickrouter.datastore"), "DataManager", None)
    if manager_class is None:
        return ParquetTrainingData(root)
    manager: TrainingData = manager_class(root)
    return manager
