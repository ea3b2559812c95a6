"""Hold labelled records per partition until a file's worth has gathered.

Writing every commit's records straight to Parquet makes one small file per
touched partition per commit: with thousands of campaigns that is thousands
of tiny files a second. Records are therefore held per partition (campaign,
UTC day) and written when the partition holds ``min_file_rows`` records, when
its oldest record has waited ``max_hold_seconds`` (wall time), when the
buffer as a whole exceeds ``max_records``, or when the consumer stops. Held
records are part of the committed consumer state (as Arrow IPC, so saving
them costs a copy, not a per-record encode), so holding loses nothing across
a crash; only *which* file a record lands in can differ, never the set of
records.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from clickrouter.datastore.schema import RECORD_SCHEMA

SECONDS_PER_DAY = 86400.0
Key = tuple[str, int]


def _days(table: pa.Table) -> pa.Array:
    return pc.floor(pc.divide(table["ts"], SECONDS_PER_DAY)).cast(pa.int64())


class RecordBuffer:
    """Labelled records (RECORD_SCHEMA tables) waiting for their partition's file."""

    def __init__(
        self,
        *,
        min_file_rows: int = 20_000,
        max_hold_seconds: float = 60.0,
        max_records: int = 500_000,
    ) -> None:
        self.min_file_rows = min_file_rows
        self.max_hold_seconds = max_hold_seconds
        self.max_records = max_records
        self._tables: list[pa.Table] = []
        self._counts: dict[Key, int] = {}
        self._since: dict[Key, float] = {}

    def __len__(self) -> int:
        return sum(t.num_rows for t in self._tables)

    def add(self, records: pa.Table, now: float) -> None:
        if records.num_rows == 0:
            return
        keyed = pa.table({"campaign_id": records["campaign_id"], "day": _days(records)})
        counts = keyed.group_by(["campaign_id", "day"]).aggregate([([], "count_all")])
        for cid, day, n in zip(*(counts[c].to_pylist() for c in counts.column_names), strict=True):
            key = (cid, day)
            self._counts[key] = self._counts.get(key, 0) + n
            self._since.setdefault(key, now)
        self._tables.append(records)

    def take(self, now: float, *, force: bool = False) -> pa.Table:
        """Remove and return the records due to be written now."""
        if force or len(self) > self.max_records:
            due = set(self._counts)
        else:
            due = {
                key
                for key, n in self._counts.items()
                if n >= self.min_file_rows or now - self._since[key] >= self.max_hold_seconds
            }
        if not due:
            return RECORD_SCHEMA.empty_table()
        held = self.held()
        for key in due:
            del self._counts[key], self._since[key]
        if not self._counts:
            self._tables = []
            return held
        mask = self._mask(held, due)
        self._tables = [held.filter(pc.invert(mask))]
        return held.filter(mask)

    @staticmethod
    def _mask(table: pa.Table, due: set[Key]) -> pa.ChunkedArray:
        keys = pc.binary_join_element_wise(
            table["campaign_id"], _days(table).cast(pa.string()), "\x00"
        )
        wanted = pa.array([f"{cid}\x00{day}" for cid, day in due], pa.string())
        return pc.is_in(keys, value_set=wanted)

    def held(self) -> pa.Table:
        if not self._tables:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables(self._tables)

    def to_ipc(self) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, RECORD_SCHEMA) as writer:
            writer.write_table(self.held())
        return bytes(sink.getvalue())

    def add_ipc(self, data: bytes, now: float) -> None:
        if data:
            self.add(pa.ipc.open_stream(data).read_all(), now)
