"""The consumer's durable state, saved incrementally.

Each commit writes one immutable *state part* with what that commit added:
the accepted clicks (Arrow IPC; the pending ones among them are the join's
state, and their event and click ids are the deduplication memory), the other
remembered event ids (sales, refused clicks) and the labelled records held for
fuller files. The small state blob, rewritten every commit, holds the rest:
the watermark, the orphan sales, and per live part which of its clicks are
still pending and which of its records are still held (bitmaps).

A part is released (deleted by the commit that stops listing it) once none of
its clicks is pending, none of its records is held and all of its ids are
older than the attribution horizon: events that old are refused as late, so
their ids need no remembering. Commit cost therefore follows what is new, not
how much is pending.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import msgspec
import numpy as np
import pyarrow as pa

from clickrouter.datastore import with_page_ids
from clickrouter.errors import ClickrouterError
from clickrouter.events import SaleEvent
from clickrouter.stream.arrowio import ipc_to_table, table_to_ipc
from clickrouter.stream.batch import CLICK_SCHEMA
from clickrouter.stream.blocks import ClickBlock
from clickrouter.stream.buffer import RecordBuffer
from clickrouter.stream.join import BatchAttributor

_sale_decoder = msgspec.json.Decoder(SaleEvent)


class PartFile(msgspec.Struct, frozen=True):
    """The content of one state part file."""

    # the clicks of that commit's batches: per batch an Arrow IPC stream
    # (CLICK_SCHEMA; the bytes the decode worker sent, when it decoded the
    # batch) and which of its rows were accepted (np.packbits; None = all)
    clicks: list[bytes]
    accepted: list[bytes | None]
    ids: list[str]  # other event ids remembered in that commit
    ids_ts: list[float]
    held: bytes  # Arrow IPC stream, RECORD_SCHEMA: records held in that commit


class PartRef(msgspec.Struct, frozen=True):
    name: str
    clicks: int
    pending: bytes  # np.packbits: which clicks still wait for their sale
    holds: bool  # whether any of the part's records is still held
    held_rows: int
    held: bytes | None  # np.packbits over the part's held records; None = all
    max_ts: float  # newest ts among the part's ids


class ConsumerState(msgspec.Struct, frozen=True, tag="parts-v1"):
    """The small state blob."""

    max_ts: float
    seq: int
    orphans: list[tuple[bytes, int]]  # raw sale line, arrival sequence
    parts: list[PartRef]


@dataclass
class Part:
    """A committed state part as the consumer holds it in memory."""

    name: str
    blocks: list[ClickBlock]
    ids: list[str]
    max_ts: float


class StateBook:
    """Keeps the parts of ``attr`` and ``buffer`` and writes their state."""

    def __init__(self, attr: BatchAttributor, buffer: RecordBuffer) -> None:
        self.attr, self.buffer = attr, buffer
        self.parts: list[Part] = []

    def fresh_part(self) -> bytes | None:
        """What this commit adds, as one part file (None when nothing)."""
        attr = self.attr
        held = self.buffer.fresh()
        blocks = [b for b in attr.fresh if len(b)]
        if not attr.fresh_ids and not held.num_rows and not blocks:
            return None
        clicks = [b.ipc if b.ipc is not None else table_to_ipc(b.table) for b in blocks]
        accepted = [None if b.member is None else np.packbits(b.member).tobytes() for b in blocks]
        return msgspec.msgpack.encode(
            PartFile(clicks, accepted, attr.fresh_ids, attr.fresh_ids_ts, table_to_ipc(held))
        )

    def adopt(self, name: str) -> None:
        """The fresh state is now committed as part ``name``."""
        attr = self.attr
        stamps = [*attr.fresh_ids_ts, *(float(b.ts.max()) for b in attr.fresh if len(b))]
        for block in attr.fresh:
            block.part = name
        self.parts.append(Part(name, attr.fresh, attr.fresh_ids, max(stamps, default=-math.inf)))
        attr.fresh, attr.fresh_ids, attr.fresh_ids_ts = [], [], []
        self.buffer.adopt(name)

    def release(self) -> list[str]:
        """Forget parts nothing needs any more; returns the names still live."""
        horizon = self.attr.max_ts - self.attr.horizon
        held = self.buffer.part_masks()
        live = []
        for part in self.parts:
            if part.max_ts < horizon and part.name not in held and not _pending(part):
                self._forget(part)
            else:
                live.append(part)
        self.parts = live
        return [p.name for p in live]

    def _forget(self, part: Part) -> None:
        # done by the join before its next batch: after a run's final commit
        # there is none, and dropping ~200,000 ids was 0.15-0.2 s of it
        self.attr.forget_later(part.ids, part.blocks)

    def blob(self) -> bytes:
        attr, held = self.attr, self.buffer.part_masks()
        refs = []
        for part in self.parts:
            pending = [b.member_alive() for b in part.blocks]
            mask = np.concatenate(pending) if pending else np.zeros(0, dtype=bool)
            rows = held.get(part.name)
            refs.append(
                PartRef(
                    name=part.name,
                    clicks=len(mask),
                    pending=np.packbits(mask).tobytes(),
                    holds=part.name in held,
                    held_rows=0 if rows is None else len(rows),
                    held=None if rows is None else np.packbits(rows).tobytes(),
                    max_ts=part.max_ts,
                )
            )
        orphans = [(raw, seq) for sales in attr.orphans.values() for _, raw, seq in sales]
        state = ConsumerState(attr.max_ts, attr.seq, sorted(orphans, key=lambda o: o[1]), refs)
        return msgspec.msgpack.encode(state)

    def restore(self, blob: bytes, load: Callable[[str], bytes], now: float) -> None:
        try:
            state = msgspec.msgpack.decode(blob, type=ConsumerState)
        except msgspec.DecodeError:
            raise ClickrouterError(
                "the dataset's consumer state was written by an older clickrouter "
                "(whole-state snapshots): finish it with that version or start a new --data"
            ) from None
        attr = self.attr
        attr.max_ts, attr.seq = state.max_ts, state.seq
        for ref in state.parts:
            self._restore_part(ref, msgspec.msgpack.decode(load(ref.name), type=PartFile), now)
        for raw, seq in state.orphans:
            sale = _sale_decoder.decode(raw)
            attr.orphans.setdefault(sale.click_id, []).append((sale, raw, seq))
            attr._expiring.append((sale.ts, seq, sale.click_id))
        attr._expiring.sort()

    def _restore_part(self, ref: PartRef, content: PartFile, now: float) -> None:
        attr = self.attr
        table = _accepted_clicks(content)
        alive = np.unpackbits(np.frombuffer(ref.pending, dtype=np.uint8), count=ref.clicks)
        click_ids = table.column("click_id").to_pylist()
        event_ids = table.column("id").to_pylist()
        block = ClickBlock(
            table, event_ids, click_ids, attr.window, alive.astype(bool), None, ref.name
        )
        attr.seen.update(event_ids)
        attr.seen.update(content.ids)
        attr.known.update(zip(click_ids, zip(repeat(block), range(len(click_ids))), strict=True))
        attr.n_pending += int(block.alive.sum())
        attr.schedule(block)
        self.parts.append(Part(ref.name, [block], content.ids, ref.max_ts))
        if not ref.holds:
            return
        held = None
        if ref.held is not None:
            bits = np.frombuffer(ref.held, dtype=np.uint8)
            held = np.unpackbits(bits, count=ref.held_rows).astype(bool)
        self.buffer.add_part(ref.name, with_page_ids(ipc_to_table(content.held)), held, now)


def _accepted_clicks(content: PartFile) -> pa.Table:
    """The part's accepted clicks, in order, as one table (a part written before
    pages gains ``landing_page_id``: its clicks went to their ``default`` page)."""
    tables = []
    for ipc, accepted in zip(content.clicks, content.accepted, strict=True):
        table = with_page_ids(ipc_to_table(ipc))
        if accepted is not None:
            bits = np.frombuffer(accepted, dtype=np.uint8)
            table = table.filter(pa.array(np.unpackbits(bits, count=table.num_rows).astype(bool)))
        tables.append(table)
    if not tables:
        return CLICK_SCHEMA.empty_table()
    return pa.concat_tables(tables).combine_chunks()


def _pending(part: Part) -> bool:
    return any(block.has_alive() for block in part.blocks)
