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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickrouter.datastore import RECORD_SCHEMA, with_page_ids
from clickrouter.stream.arrowio import ipc_to_table, table_to_ipc

SECONDS_PER_DAY = 86400.0
Key = tuple[str, int]


def _days(table: pa.Table) -> pa.Array:
    return pc.floor(pc.divide(table["ts"], SECONDS_PER_DAY)).cast(pa.int64())


class _Piece:
    """Records added together; ``held`` marks the rows not yet taken (None: all).
    ``part`` names the committed state part that stores ``table`` (None: not yet)."""

    __slots__ = ("held", "part", "table")

    def __init__(self, table: pa.Table, held: np.ndarray | None, part: str | None) -> None:
        self.table, self.held, self.part = table, held, part

    def rows(self) -> pa.Table:
        return self.table if self.held is None else self.table.filter(self.held)


class RecordBuffer:
    """Labelled records (RECORD_SCHEMA tables) waiting for their partition's file.

    Held records are saved incrementally: each commit stores only the records
    it added (:meth:`fresh`, then :meth:`adopt`), plus which rows of earlier
    parts are still held (:meth:`part_masks`).
    """

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
        self._pieces: list[_Piece] = []
        self._counts: dict[Key, int] = {}
        self._since: dict[Key, float] = {}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, records: pa.Table, now: float) -> None:
        self._add(_Piece(records, None, None), now)

    def _add(self, piece: _Piece, now: float) -> None:
        records = piece.rows()
        if records.num_rows == 0:
            return
        keyed = pa.table({"campaign_id": records["campaign_id"], "day": _days(records)})
        counts = keyed.group_by(["campaign_id", "day"]).aggregate([([], "count_all")])
        for cid, day, n in zip(*(counts[c].to_pylist() for c in counts.column_names), strict=True):
            key = (cid, day)
            self._counts[key] = self._counts.get(key, 0) + n
            self._since.setdefault(key, now)
        self._pieces.append(piece)
        self._rows += records.num_rows

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
        for key in due:
            del self._counts[key], self._since[key]
        if not self._counts:
            out = self.held()
            self._pieces, self._rows = [], 0
            return out
        taken = [self._take_from(piece, due) for piece in self._pieces]
        self._pieces = [p for p in self._pieces if p.held is None or p.held.any()]
        out = pa.concat_tables(taken) if taken else RECORD_SCHEMA.empty_table()
        self._rows -= out.num_rows
        return out

    def _take_from(self, piece: _Piece, due: set[Key]) -> pa.Table:
        in_due = self._mask(piece.table, due).to_numpy(zero_copy_only=False)
        held = np.ones(piece.table.num_rows, dtype=bool) if piece.held is None else piece.held
        leaving = held & in_due
        piece.held = held & ~in_due
        return piece.table.filter(leaving)

    @staticmethod
    def _mask(table: pa.Table, due: set[Key]) -> pa.ChunkedArray:
        keys = pc.binary_join_element_wise(
            table["campaign_id"], _days(table).cast(pa.string()), "\x00"
        )
        wanted = pa.array([f"{cid}\x00{day}" for cid, day in due], pa.string())
        return pc.is_in(keys, value_set=wanted)

    def held(self) -> pa.Table:
        if not self._pieces:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables([p.rows() for p in self._pieces])

    # -- incremental state ------------------------------------------------------
    def fresh(self) -> pa.Table:
        """Held records not yet stored in a state part."""
        tables = [p.rows() for p in self._pieces if p.part is None]
        return pa.concat_tables(tables) if tables else RECORD_SCHEMA.empty_table()

    def adopt(self, part: str) -> None:
        """The :meth:`fresh` records are now stored (whole) in state part ``part``."""
        table = self.fresh()
        self._pieces = [p for p in self._pieces if p.part is not None]
        if table.num_rows:
            self._pieces.append(_Piece(table, None, part))

    def part_masks(self) -> dict[str, np.ndarray | None]:
        """Per state part, which of its rows are still held (None: all)."""
        return {p.part: p.held for p in self._pieces if p.part is not None}

    def add_part(self, part: str, table: pa.Table, held: np.ndarray | None, now: float) -> None:
        """Restore records held in state part ``part`` (``held`` as :meth:`part_masks`)."""
        self._add(_Piece(table, held, part), now)

    def to_ipc(self) -> bytes:
        return table_to_ipc(self.held())

    def add_ipc(self, data: bytes, now: float) -> None:
        if data:
            self.add(with_page_ids(ipc_to_table(data)), now)
