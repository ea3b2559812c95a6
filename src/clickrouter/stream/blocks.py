"""Pending clicks kept as columns: one block per decoded batch (or restored state part).

A :class:`ClickBlock` holds the clicks of one batch as an Arrow table
(:data:`~clickrouter.stream.batch.CLICK_SCHEMA`) plus numpy arrays: the close
time of each click's window (``due``), which rows are still waiting for their
sale (``alive``) and which rows were accepted at all (``member``; duplicates
and late clicks are not). Closing windows is then one vectorised comparison
per block, and a labelled record is a ``take`` of the block's columns.
"""

from __future__ import annotations

import math
from itertools import compress

import numpy as np
import pyarrow as pa


class ClickBlock:
    """Clicks of one batch; ``part`` names the committed state part holding them."""

    __slots__ = (
        "alive", "click_ids", "due", "event_ids", "ipc", "member", "next_due", "part", "table",
        "ts",
    )  # fmt: skip

    def __init__(
        self,
        table: pa.Table,
        event_ids: list[str],
        click_ids: list[str],
        window: float,
        alive: np.ndarray,
        member: np.ndarray | None,
        part: str | None = None,
        ipc: bytes | None = None,
    ) -> None:
        self.table = table
        self.ipc = ipc  # ``table`` as Arrow IPC when it arrived so (saves re-encoding)
        self.event_ids, self.click_ids = event_ids, click_ids  # per row, as Python objects
        self.ts = table.column("ts").to_numpy()
        self.due = self.ts + window  # the same float the line-by-line join computes
        self.alive = alive
        self.member = member  # None: every row was accepted
        self.part = part
        self.next_due = -math.inf  # a lower bound of the earliest alive due time
        self.refresh()

    def __len__(self) -> int:
        return self.table.num_rows

    def refresh(self) -> None:
        due = self.due[self.alive]
        self.next_due = float(due.min()) if len(due) else math.inf

    def close_due(self, watermark: float) -> np.ndarray:
        """Rows whose window closed before ``watermark`` (strictly): now closed."""
        if self.next_due >= watermark:
            return np.empty(0, dtype=np.int64)
        rows = np.flatnonzero(self.alive & (self.due < watermark))
        self.alive[rows] = False
        self.refresh()
        return rows

    def close_all(self) -> np.ndarray:
        rows = np.flatnonzero(self.alive)
        self.alive[:] = False
        self.next_due = math.inf
        return rows

    def member_ids(self) -> tuple[list[str], list[str]]:
        """Event ids and click ids of the accepted rows."""
        if self.member is None:
            return self.event_ids, self.click_ids
        keep = self.member.tolist()
        return list(compress(self.event_ids, keep)), list(compress(self.click_ids, keep))

    def member_alive(self) -> np.ndarray:
        return self.alive if self.member is None else self.alive[self.member]

    def has_alive(self) -> bool:
        return bool(self.alive.any())
