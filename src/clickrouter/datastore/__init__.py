"""DataManager: labelled records into self-contained, hive-partitioned Parquet datasets."""
