"""DataManager: labelled records into self-contained, hive-partitioned Parquet datasets."""

from clickrouter.datastore.manager import DataManager
from clickrouter.datastore.schema import PARTITION_COLUMNS, RECORD_COLUMNS, RECORD_SCHEMA

__all__ = ["PARTITION_COLUMNS", "RECORD_COLUMNS", "RECORD_SCHEMA", "DataManager"]
