"""Split a table of labelled records into hive partitions and write them as Parquet.

Every file is self-describing: the Arrow schema travels inside it, and the
key-value metadata names the record schema, the feature-space version and the
source offsets of the commit that wrote it. Files are written to a temporary
name, fsynced, then renamed, so a reader never opens half a file.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickrouter.datastore.atomic import fsync_dir, fsync_file, tmp_name
from clickrouter.datastore.ids import is_safe_campaign_id
from clickrouter.datastore.manifest import DataFile
from clickrouter.datastore.schema import RECORD_SCHEMA, with_page_ids
from clickrouter.errors import InvalidInput
from clickrouter.features import FORMAT_VERSION as FEATURE_FORMAT_VERSION
from clickrouter.profile import CANONICAL_FIELDS

# campaign_id is a partition column: the files hold every other record column
FILE_SCHEMA = pa.schema([f for f in RECORD_SCHEMA if f.name != "campaign_id"])
_EPOCH = dt.date(1970, 1, 1)
SECONDS_PER_DAY = 86400
_WRITER_THREADS = 4
# Dictionary-encode only the low-cardinality columns: on unique values (ids,
# timestamps, propensities) a dictionary is pure cost (40 % of the encoding
# CPU for 300,000 records, and larger files); readers see the same schema.
DICTIONARY_COLUMNS = (
    "country", "device", "os", "browser", "provider", "model_version", "local_hour",
    "local_weekday", "label", "landing_page_id",
)  # fmt: skip


def utc_date(ts: float) -> str:
    """The UTC calendar day of epoch seconds ``ts``, as YYYY-MM-DD."""
    return (_EPOCH + dt.timedelta(days=int(ts // SECONDS_PER_DAY))).isoformat()


def file_metadata(generation: int, source: Mapping[str, Any]) -> dict[bytes, bytes]:
    meta = {
        "clickrouter.record_columns": json.dumps(RECORD_SCHEMA.names),
        "clickrouter.partitioning": "campaign_id=<id>/date=<YYYY-MM-DD UTC of ts>",
        "clickrouter.feature_format_version": str(FEATURE_FORMAT_VERSION),
        "clickrouter.canonical_fields": json.dumps(list(CANONICAL_FIELDS)),
        "clickrouter.generation": str(generation),
        "clickrouter.source_offsets": json.dumps(source, sort_keys=True),
    }
    return {k.encode(): v.encode() for k, v in meta.items()}


def split_partitions(records: pa.Table) -> Iterator[tuple[str, str, pa.Table]]:
    """Yield ``(campaign_id, date, rows)`` per partition, rows sorted by ``ts``.

    Partitions come in (campaign_id, date) order. The sort runs on integer
    campaign ranks in numpy: sorting the string column itself cost more than
    writing the files.
    """
    if records.num_rows == 0:
        return
    ts = records.column("ts").to_numpy()
    day = np.floor(ts / float(SECONDS_PER_DAY)).astype(np.int64)
    encoded = records.column("campaign_id").combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    by_name = np.argsort(names, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_name] = np.arange(len(names))
    code = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    order = np.lexsort((ts, day, code))  # stable; the last key sorts first
    table = records.combine_chunks().take(pa.array(order))  # take is slow on many chunks
    code, day = code[order], day[order]
    cuts = np.flatnonzero((code[1:] != code[:-1]) | (day[1:] != day[:-1])) + 1
    bounds = [0, *cuts.tolist(), table.num_rows]
    sorted_names = names[by_name]
    for lo, hi in itertools.pairwise(bounds):
        part = table.slice(lo, hi - lo)
        date = utc_date(float(day[lo]) * SECONDS_PER_DAY)
        yield str(sorted_names[code[lo]]), date, part


def write_partition_file(
    root: Path, rel_path: str, rows: pa.Table, metadata: dict[bytes, bytes], *, durable: bool
) -> DataFile:
    """Write ``rows`` (record columns, with or without campaign_id) to ``rel_path``.

    Rows without ``landing_page_id`` (read from a file written before pages)
    are written with ``default``, the page their clicks went to.
    """
    final = root / rel_path
    final.parent.mkdir(parents=True, exist_ok=True)
    body = (
        with_page_ids(rows)
        .select(FILE_SCHEMA.names)
        .cast(FILE_SCHEMA)
        .replace_schema_metadata(metadata)
    )
    tmp = tmp_name(final)
    pq.write_table(body, tmp, compression="snappy", use_dictionary=list(DICTIONARY_COLUMNS))
    if durable:
        fsync_file(tmp)
    os.replace(tmp, final)
    parts = Path(rel_path).parts
    ts = body["ts"]
    return DataFile(
        path=rel_path,
        campaign_id=parts[0].split("=", 1)[1],
        date=parts[1].split("=", 1)[1],
        rows=body.num_rows,
        min_ts=float(pc.min(ts).as_py()),
        max_ts=float(pc.max(ts).as_py()),
    )


def write_records(
    root: Path, records: pa.Table, generation: int, source: Mapping[str, Any], *, durable: bool
) -> list[DataFile]:
    """Write one file per partition touched by ``records``; returns their entries.

    Partitions are written by a few threads (Parquet encoding and fsync release
    the GIL), then the directories that gained a name are fsynced.
    """
    metadata = file_metadata(generation, source)
    jobs = []
    for k, (campaign_id, date, rows) in enumerate(split_partitions(records)):
        if not is_safe_campaign_id(campaign_id):
            raise InvalidInput(f"campaign_id {campaign_id!r} cannot name a partition")
        rel = f"campaign_id={campaign_id}/date={date}/part-{generation:010d}-{k:05d}.parquet"
        jobs.append((rel, rows))
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=_WRITER_THREADS) as pool:
        written = list(
            pool.map(
                lambda job: write_partition_file(root, job[0], job[1], metadata, durable=durable),
                jobs,
            )
        )
        if durable:
            leaves = {(root / f.path).parent for f in written}
            list(pool.map(fsync_dir, leaves | {d.parent for d in leaves} | {root}))
    return written


class PendingFiles:
    """Partition files being written in the background (:func:`start_write_records`).

    Nothing lists them until a commit's manifest does, so a crash meanwhile
    leaves files that recovery deletes, exactly as after :func:`write_records`.
    """

    def __init__(self, generation: int, source: Mapping[str, Any], future: Future[Any] | None):
        self.generation, self.source, self._future = generation, dict(source), future

    def result(self) -> list[DataFile]:
        """The files' entries, once written (re-raises the writer's error)."""
        return [] if self._future is None else list(self._future.result())

    def discard(self, root: Path) -> None:
        """Wait for the writes and delete what they wrote (the commit failed)."""
        try:
            files = self.result()
        except Exception:  # the commit's own error is the one to report
            return
        for f in files:
            (root / f.path).unlink(missing_ok=True)


def start_write_records(
    root: Path, records: pa.Table, generation: int, source: Mapping[str, Any], *, durable: bool
) -> PendingFiles:
    """:func:`write_records` in a background thread, so the caller can prepare
    the rest of its commit (state, sidecars) while Parquet encodes and fsyncs
    run (they release the GIL): the final commit of a run is otherwise serial."""
    if records.num_rows == 0:
        return PendingFiles(generation, source, None)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-commit")
    future = pool.submit(write_records, root, records, generation, dict(source), durable=durable)
    pool.shutdown(wait=False)  # the thread ends with its one job
    return PendingFiles(generation, source, future)
