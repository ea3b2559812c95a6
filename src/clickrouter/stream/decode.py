"""Raw lines -> validated events, or dead letters naming the reason and the position.

The fast path decodes a whole chunk in one ``msgspec`` call; a bad line is
found from msgspec's error and decoded alone, with the reasons
:func:`clickrouter.events.decode_event` gives. :meth:`ChunkDecoder.decode_batch`
then checks value ranges column-wise (naming a refused event's reason with the
same checks ``decode_event`` applies) and returns an
:class:`~clickrouter.stream.batch.EventBatch`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import repeat

import msgspec

from clickrouter.datastore import is_safe_campaign_id
from clickrouter.events import (
    ClickEvent,
    Event,
    EventDecodeError,
    _check_ranges,  # the exact range checks decode_event applies, to name a reason
)
from clickrouter.stream.batch import EventBatch, build_batch
from clickrouter.stream.lines import BatchLines, LineView
from clickrouter.stream.source import Chunk

_batch_decoder = msgspec.json.Decoder(Event)
_SLOW_BLOCK = 16  # below this many lines, find bad lines one by one


def _join(lines: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Lines ``lo:hi``, each newline-terminated (a slice of a LineView's bytes)."""
    if isinstance(lines, LineView):
        return lines.joined(lo, hi)
    return b"\n".join(lines[lo:hi]) + b"\n"


_AT_LINE = re.compile(r"- at `\$\[(\d+)\]")
_AT_BYTE = re.compile(r"\(byte (\d+)\)")


def _failed_line(exc: msgspec.DecodeError, data: bytes) -> int | None:
    """Which line of ``data`` a ``decode_lines`` error names, if it names one.

    A hint only: a wrong guess costs time, never correctness, because every
    line is either part of a block that decoded whole or decoded alone.
    """
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        at = _AT_LINE.search(message)
        return int(at[1]) if at else None
    at = _AT_BYTE.search(message)
    return data.count(b"\n", 0, int(at[1])) if at else None


class ChunkDecoder:
    """Decodes chunks; collects dead-letter lines and remembers safe campaign ids."""

    def __init__(self) -> None:
        self.dead_letters: list[bytes] = []
        self._safe_campaigns: set[str] = set()
        self._dead_at: list[tuple[int, str]] = []  # this chunk's (line, reason)

    def decode_batch(self, chunks: list[Chunk]) -> EventBatch:
        """The chunks' valid events, in order, as one batch of columns; the other
        lines become dead letters (in line order, whatever check refused them)."""
        batch, _, dead = self.parse(chunks)
        self.add_dead_letters(chunks, dead)
        return batch

    def add_dead_letters(self, chunks: list[Chunk], dead: list[tuple[int, int, str]]) -> None:
        """Dead letters for ``(chunk number, line, reason)``, in that order."""
        self.dead_letters.extend(self._letter(chunks[n], i, reason) for n, i, reason in dead)

    def parse(
        self, chunks: list[Chunk]
    ) -> tuple[EventBatch, list[tuple[int, int]], list[tuple[int, int, str]]]:
        """The batch, the ``(chunk number, line)`` of each of its events, and the
        refused lines as ``(chunk number, line, reason)`` sorted by position."""
        events: list[Event] = []
        raws = BatchLines()
        origin: list[tuple[int, int]] = []
        dead: list[tuple[int, int, str]] = []
        for n, chunk in enumerate(chunks):
            self._dead_at = []
            index: list[int] = []
            if chunk.data is None:
                self._parse_slow(chunk, 0, len(chunk.lines), events, index)
            else:
                self._parse_block(chunk, 0, len(chunk.lines), chunk.data, events, index)
            raws.add(chunk.lines, None if len(index) == len(chunk.lines) else index)
            origin.extend(zip(repeat(n), index))
            dead.extend((n, i, reason) for i, reason in self._dead_at)
        batch, problems = build_batch(
            events, raws, campaign_ok=self._campaign_ok, invalid=self._invalid
        )
        dead.extend((*origin[k], reason) for k, reason in problems)
        if problems:
            drop = {k for k, _ in problems}
            origin = [o for k, o in enumerate(origin) if k not in drop]
        dead.sort(key=lambda item: item[:2])
        return batch, origin, dead

    def _parse_block(
        self, chunk: Chunk, lo: int, hi: int, data: bytes, events: list[Event], index: list[int]
    ) -> None:
        """msgspec-decode lines ``lo:hi`` (joined in ``data``) in one call.

        A bad line fails the call; msgspec names where (line or byte), so the
        lines before it are decoded in one call, it goes the line-by-line way,
        and the rest continues. When the error does not name a line inside
        the block (a blank line, another message), the block is halved.
        """
        while lo < hi:
            bad: int | None = None
            try:
                decoded: list[Event] = _batch_decoder.decode_lines(data)
            except msgspec.DecodeError as exc:
                decoded, bad = [], _failed_line(exc, data)
            if len(decoded) == hi - lo:
                events.extend(decoded)
                index.extend(range(lo, hi))
                return
            if bad is None or not 0 <= bad < hi - lo or hi - lo <= _SLOW_BLOCK:
                self._halve(chunk, lo, hi, events, index)
                return
            if bad:
                self._parse_block(
                    chunk, lo, lo + bad, _join(chunk.lines, lo, lo + bad), events, index
                )
            self._parse_slow(chunk, lo + bad, lo + bad + 1, events, index)
            lo += bad + 1
            data = _join(chunk.lines, lo, hi)

    def _halve(self, chunk: Chunk, lo: int, hi: int, events: list[Event], index: list[int]) -> None:
        if hi - lo <= _SLOW_BLOCK:
            self._parse_slow(chunk, lo, hi, events, index)
            return
        mid = (lo + hi) // 2
        self._parse_block(chunk, lo, mid, _join(chunk.lines, lo, mid), events, index)
        self._parse_block(chunk, mid, hi, _join(chunk.lines, mid, hi), events, index)

    def _parse_slow(
        self, chunk: Chunk, lo: int, hi: int, events: list[Event], index: list[int]
    ) -> None:
        for i in range(lo, hi):
            raw = chunk.lines[i]
            if not raw.strip():
                self._dead_at.append((i, "empty line"))
                continue
            try:
                event = _batch_decoder.decode(raw)
            except msgspec.ValidationError as exc:
                self._dead_at.append((i, f"invalid event: {exc}"))
                continue
            except msgspec.DecodeError as exc:
                self._dead_at.append((i, f"malformed JSON: {exc}"))
                continue
            events.append(event)
            index.append(i)

    def _campaign_ok(self, campaign_id: str) -> bool:
        if campaign_id in self._safe_campaigns:
            return True
        if is_safe_campaign_id(campaign_id):
            self._safe_campaigns.add(campaign_id)
            return True
        return False

    def _letter(self, chunk: Chunk, i: int, reason: str) -> bytes:
        record = {
            "reason": reason,
            "position": chunk.position_of(i),
            "line": chunk.lines[i].decode("utf-8", errors="replace"),
        }
        return json.dumps(record).encode()

    def _invalid(self, event: Event) -> str | None:
        try:
            _check_ranges(event)
        except EventDecodeError as exc:
            return exc.message
        return self._campaign_problem(event)

    def _campaign_problem(self, event: Event) -> str | None:
        if not isinstance(event, ClickEvent) or event.campaign_id in self._safe_campaigns:
            return None
        if is_safe_campaign_id(event.campaign_id):
            self._safe_campaigns.add(event.campaign_id)
            return None
        return f"invalid event: campaign_id {event.campaign_id!r} cannot name a partition"

    def take_dead_letters(self) -> list[bytes]:
        out, self.dead_letters = self.dead_letters, []
        return out
