"""Raw lines -> validated events, or dead letters naming the reason and the position.

The fast path decodes a whole chunk in one ``msgspec`` call; only a chunk that
contains a bad line is decoded again line by line, through the same
:func:`clickrouter.events.decode_event` every other reader uses.
"""

from __future__ import annotations

import json

import msgspec

from clickrouter.datastore.partition import is_safe_campaign_id
from clickrouter.events import (
    ClickEvent,
    Event,
    EventDecodeError,
    _check_ranges,  # the exact range checks decode_event applies, for the batch path
    decode_event,
)
from clickrouter.stream.source import Chunk

_batch_decoder = msgspec.json.Decoder(Event)
_SLOW_BLOCK = 16  # below this many lines, find bad lines one by one


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


class ChunkDecoder:
    """Decodes chunks; collects dead-letter lines and remembers safe campaign ids."""

    def __init__(self) -> None:
        self.dead_letters: list[bytes] = []
        self._safe_campaigns: set[str] = set()

    def decode(self, chunk: Chunk) -> list[tuple[Event, bytes]]:
        if chunk.data is None:
            return self._decode_slow(chunk, 0, len(chunk.lines))
        return self._decode_block(chunk, 0, len(chunk.lines), chunk.data)

    def _decode_block(
        self, chunk: Chunk, lo: int, hi: int, data: bytes
    ) -> list[tuple[Event, bytes]]:
        """Decode lines ``lo:hi`` (joined in ``data``); halve around bad lines."""
        try:
            events: list[Event] = _batch_decoder.decode_lines(data)
        except msgspec.DecodeError:
            events = []
        if len(events) != hi - lo:  # a bad or blank line somewhere in the block
            if hi - lo <= _SLOW_BLOCK:
                return self._decode_slow(chunk, lo, hi)
            mid = (lo + hi) // 2
            return self._decode_block(chunk, lo, mid, _join(chunk.lines[lo:mid])) + (
                self._decode_block(chunk, mid, hi, _join(chunk.lines[mid:hi]))
            )
        lines, safe = chunk.lines, self._safe_campaigns
        out: list[tuple[Event, bytes]] = []
        for i, event in enumerate(events, start=lo):
            # the common case inline: a click of a known campaign with sane ranges
            if (
                event.__class__ is ClickEvent
                and event.campaign_id in safe
                and 0.0 < event.propensity <= 1.0
                and 0 <= event.profile.local_hour < 24
                and 0 <= event.profile.local_weekday < 7
            ):
                out.append((event, lines[i]))
                continue
            reason = self._invalid(event)
            if reason is None:
                out.append((event, lines[i]))
            else:
                self._dead(chunk, i, reason)
        return out

    def _decode_slow(self, chunk: Chunk, lo: int, hi: int) -> list[tuple[Event, bytes]]:
        out: list[tuple[Event, bytes]] = []
        for i in range(lo, hi):
            raw = chunk.lines[i]
            if not raw.strip():
                self._dead(chunk, i, "empty line")
                continue
            try:
                event = decode_event(raw)
            except EventDecodeError as exc:
                self._dead(chunk, i, exc.message)
                continue
            reason = self._campaign_problem(event)
            if reason is None:
                out.append((event, raw))
            else:
                self._dead(chunk, i, reason)
        return out

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

    def _dead(self, chunk: Chunk, i: int, reason: str) -> None:
        record = {
            "reason": reason,
            "position": chunk.position_of(i),
            "line": chunk.lines[i].decode("utf-8", errors="replace"),
        }
        self.dead_letters.append(json.dumps(record).encode())

    def take_dead_letters(self) -> list[bytes]:
        out, self.dead_letters = self.dead_letters, []
        return out
