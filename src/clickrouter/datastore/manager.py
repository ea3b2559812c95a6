"""DataManager: the one object through which datasets are written and read.

Readers (the TrainingManager, notebooks) open ``DataManager(root)`` and see
whole commits only: the data files come from the committed manifest, and a
file that compaction or retention removed between reading the manifest and
opening it makes the read start over from the new manifest. The consumer
opens ``DataManager(root, writable=True)``, which takes the writer lock and
recovers from any interrupted commit (see :mod:`clickrouter.datastore.writer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from clickrouter.datastore.manifest import DataFile, Manifest, load_manifest, manifest_path
from clickrouter.datastore.partition import FILE_SCHEMA, PendingFiles
from clickrouter.datastore.schema import RECORD_COLUMNS, RECORD_SCHEMA, with_page_ids
from clickrouter.datastore.writer import DatasetWriter
from clickrouter.errors import ClickrouterError

if TYPE_CHECKING:  # pandas loads only when a frame is asked for (the consumer never does)
    import pandas as pd

_READ_ATTEMPTS = 5
_PARTITIONING = ds.partitioning(
    pa.schema([("campaign_id", pa.string()), ("date", pa.string())]), flavor="hive"
)
_SCAN_SCHEMA = FILE_SCHEMA.append(pa.field("campaign_id", pa.string())).append(
    pa.field("date", pa.string())
)


class NotWritable(ClickrouterError):
    status = 409


class DataManager:
    """Labelled records of every campaign under ``root`` (hive-partitioned Parquet).

    Parameters
    ----------
    root : dataset directory (created when writable).
    writable : take the single-writer lock and allow commits.
    durable : fsync files and directories on commit (power-loss safety; a
        killed process is safe either way).
    """

    def __init__(self, root: str | Path, *, writable: bool = False, durable: bool = True) -> None:
        self.root = Path(root)
        self._writer = DatasetWriter(self.root, durable=durable) if writable else None
        self._cached: tuple[tuple[int, int, int], Manifest] | None = None

    # -- reading ----------------------------------------------------------
    def manifest(self) -> Manifest:
        """The last committed manifest (re-read from disk when it was replaced)."""
        if self._writer is not None:
            return self._writer.manifest
        try:
            st = manifest_path(self.root).stat()
        except FileNotFoundError:
            return Manifest()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached[0] != stamp:
            self._cached = (stamp, load_manifest(self.root))
        return self._cached[1]

    def campaigns(self) -> list[str]:
        """Campaigns that have at least one committed record, sorted."""
        return sorted(self.manifest().campaigns)

    def data_version(self, campaign_id: str) -> str:
        """Opaque token that changes whenever ``campaign_id``'s records change.

        Compaction keeps it (same records); commits and retention change it.
        ``"0-0"`` for a campaign without records.
        """
        info = self.manifest().campaigns.get(campaign_id)
        return "0-0" if info is None else f"{info.changed_at}-{info.rows}"

    def data_versions(self) -> dict[str, str]:
        """:meth:`data_version` of every campaign with records, from one manifest read."""
        return {cid: f"{i.changed_at}-{i.rows}" for cid, i in self.manifest().campaigns.items()}

    def read_training_set(
        self, campaign_id: str, start: float | None = None, end: float | None = None
    ) -> pd.DataFrame:
        """Records of one campaign with ``start <= ts < end`` (epoch seconds), by ts.

        Columns are exactly ``RECORD_COLUMNS``; an empty frame has them too.
        """
        return self._read(lambda f: f.campaign_id == campaign_id, start, end)

    def read_all(self, start: float | None = None, end: float | None = None) -> pd.DataFrame:
        """Records of every campaign with ``start <= ts < end``, by ts."""
        return self._read(lambda f: True, start, end)

    def read_table(self, start: float | None = None, end: float | None = None) -> pa.Table:
        """Every committed record as an Arrow table (RECORD_SCHEMA)."""
        return self._read_arrow(lambda f: True, start, end)

    def files(self) -> list[Path]:
        return [self.root / f.path for f in self.manifest().files]

    def lookup_clicks(self, click_ids: list[str], since: float | None = None) -> pa.Table:
        """``click_id``, ``campaign_id``, ``label`` and ``ts`` of the records of these clicks.

        One scan of the ``click_id`` column of the files holding clicks at or
        after ``since`` (the trainer resolves late sales with it); clicks
        without a record there are absent.
        """
        wanted = pc.field("click_id").isin(pa.array(click_ids, pa.string()))
        columns = ["click_id", "campaign_id", "label", "ts"]
        return self._from_committed(
            lambda files: _scan(
                self.root, [f for f in files if _overlaps(f, since, None)]
            ).to_table(columns=columns, filter=wanted)
        )

    def _read(self, keep: Any, start: float | None, end: float | None) -> pd.DataFrame:
        return self._read_arrow(keep, start, end).to_pandas()

    def _read_arrow(self, keep: Any, start: float | None, end: float | None) -> pa.Table:
        return self._from_committed(
            lambda files: _load(
                self.root, [f for f in files if keep(f) and _overlaps(f, start, end)], start, end
            )
        )

    def _from_committed(self, read: Callable[[list[DataFile]], pa.Table]) -> pa.Table:
        """``read`` of the committed files, started over when one vanished meanwhile."""
        for _ in range(_READ_ATTEMPTS):
            try:
                return read(self.manifest().files)
            except FileNotFoundError:
                continue  # compaction or retention replaced a file: re-read the manifest
        raise ClickrouterError(f"{self.root}: dataset kept changing while being read")

    # -- writing (writer only) ---------------------------------------------
    @property
    def writer(self) -> DatasetWriter:
        if self._writer is None:
            raise NotWritable(f"{self.root}: opened read-only")
        return self._writer

    def begin_records(self, records: pa.Table, source: Mapping[str, Any]) -> PendingFiles:
        """Start writing the next commit's records in the background (see
        :meth:`DatasetWriter.begin_records`); hand the result to :meth:`commit`."""
        return self.writer.begin_records(records, source)

    def discard(self, pending: PendingFiles) -> None:
        """Wait for begun records and delete them (their commit failed)."""
        self.writer.discard(pending)

    def commit(
        self,
        records: pa.Table | PendingFiles,
        *,
        source: Mapping[str, Any],
        state: bytes | None = None,
        counters: Mapping[str, int] | None = None,
        sidecars: Mapping[str, Iterable[bytes]] | None = None,
        state_part: bytes | None = None,
        keep_parts: Iterable[str] | None = None,
    ) -> Manifest:
        """Atomically add ``records`` (RECORD_SCHEMA) with the state that produced them.

        ``state_part`` / ``keep_parts``: incremental state (see
        :meth:`DatasetWriter.commit`); the parts are listed in the manifest.
        """
        return self.writer.commit(
            records,
            source=source,
            state=state,
            counters=counters,
            sidecars=sidecars,
            state_part=state_part,
            keep_parts=keep_parts,
        )

    def load_state(self) -> bytes | None:
        return self.writer.load_state()

    def load_state_part(self, rel: str) -> bytes:
        return self.writer.load_state_part(rel)

    def next_state_part(self) -> str:
        """The name the next commit gives its ``state_part``."""
        return self.writer.next_state_part()

    def compact(self, *, small_rows: int = 100_000) -> int:
        return self.writer.compact(small_rows=small_rows)

    def apply_retention(self, before_ts: float) -> int:
        return self.writer.apply_retention(before_ts)

    def sidecar_path(self, name: str) -> Path:
        """``<root>/_<name>.jsonl``: dead letters, late events."""
        return self.root / f"_{name}.jsonl"

    def sidecar_length(self, name: str) -> int:
        """Committed bytes of sidecar ``name`` (a reader stops there: the rest is uncommitted)."""
        return int(self.manifest().sidecars.get(name, 0))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> DataManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _overlaps(f: DataFile, start: float | None, end: float | None) -> bool:
    return (start is None or f.max_ts >= start) and (end is None or f.min_ts < end)


def _load(root: Path, files: list[DataFile], start: float | None, end: float | None) -> pa.Table:
    if not files:
        return RECORD_SCHEMA.empty_table()
    expr = None
    if start is not None:
        expr = pc.field("ts") >= start
    if end is not None:
        expr = (pc.field("ts") < end) if expr is None else expr & (pc.field("ts") < end)
    # a file written before pages has no landing_page_id: the scan reads nulls there
    table = _scan(root, files).to_table(columns=list(RECORD_COLUMNS), filter=expr)
    table = with_page_ids(table).cast(RECORD_SCHEMA)
    return table.sort_by([("ts", "ascending"), ("click_id", "ascending")])


def _scan(root: Path, files: list[DataFile]) -> ds.Dataset:
    # one multi-threaded scan; campaign_id comes from the hive path, as DuckDB reads it
    return ds.dataset(
        [str(root / f.path) for f in files],
        schema=_SCAN_SCHEMA,
        format="parquet",
        partitioning=_PARTITIONING,
        partition_base_dir=str(root),
    )
