"""Hold labelled records per partition until a file's worth has gathered.

Writing every commit's records straight to Parquet makes one small file per
touched partition per commit: with thousands of campaigns that is thousands
of tiny files a second. Records are therefore held per partition (campaign,
UTC day) and written when the partition holds ``min_file_rows`` records, when
its oldest record has waited ``max_hold_seconds`` (wall time), when the
buffer as a whole exceeds ``max_records``, or when the consumer stops. Held
records are part of the committed consumer state, so holding loses nothing
across a crash; only *which* file a record lands in can differ, never the set
of records.
"""

from __future__ import annotations

from collections.abc import Iterable

from clickrouter.stream.attribution import Record

SECONDS_PER_DAY = 86400
Key = tuple[str, int]


class RecordBuffer:
    def __init__(
        self,
        *,
        min_file_rows: int = 20_000,
        max_hold_seconds: float = 60.0,
        max_records: int = 200_000,
    ) -> None:
        self.min_file_rows = min_file_rows
        self.max_hold_seconds = max_hold_seconds
        self.max_records = max_records
        self._parts: dict[Key, list[Record]] = {}
        self._since: dict[Key, float] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, records: Iterable[Record], now: float) -> None:
        parts = self._parts
        for record in records:
            click = record[0]
            key = (click.campaign_id, int(click.ts // SECONDS_PER_DAY))
            held = parts.get(key)
            if held is None:
                parts[key] = held = []
                self._since[key] = now
            held.append(record)
            self._count += 1

    def take(self, now: float, *, force: bool = False) -> list[Record]:
        """Remove and return the records due to be written now."""
        if force or self._count > self.max_records:
            due = list(self._parts)
        else:
            due = [
                key
                for key, held in self._parts.items()
                if len(held) >= self.min_file_rows
                or now - self._since[key] >= self.max_hold_seconds
            ]
        out: list[Record] = []
        for key in due:
            out.extend(self._parts.pop(key))
            del self._since[key]
        self._count -= len(out)
        return out

    def held(self) -> list[Record]:
        return [record for held in self._parts.values() for record in held]
