"""The local event log: a directory of append-only JSON-lines segment files.

Layout: ``<dir>/<writer_id>.<seq:08d>.jsonl``. Each writer (one per process)
owns its own series of segments, so several predictor workers can log into one
directory without locks. A line is one event ending in ``\\n``; a reader must
ignore a trailing partial line (no newline yet) until it is completed. A
segment is never rewritten, only appended to, then left behind when the writer
rotates to the next sequence number; ``<segment>.done`` marks it sealed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from clickrouter.events import Event, encode_event

SEGMENT_RE = re.compile(r"^(?P<writer>[A-Za-z0-9_-]+)\.(?P<seq>\d{8})\.jsonl$")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class EventLogWriter:
    """Appends events to this writer's current segment; rotates by size.

    Not thread-safe: give each thread or process its own writer id.
    """

    def __init__(
        self, directory: str | Path, writer_id: str, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", writer_id):
            raise ValueError(f"invalid writer id {writer_id!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.segment_bytes = segment_bytes
        self.seq = self._next_seq()
        self._fh = open(self._segment_path(), "ab")  # noqa: SIM115 - held open on purpose

    def _next_seq(self) -> int:
        seqs = [
            int(m["seq"])
            for p in self.directory.iterdir()
            if (m := SEGMENT_RE.match(p.name)) and m["writer"] == self.writer_id
        ]
        return max(seqs, default=-1) + 1  # never append to a previous run's segment

    def _segment_path(self) -> Path:
        return self.directory / f"{self.writer_id}.{self.seq:08d}.jsonl"

    def write(self, event: Event) -> None:
        self.write_raw(encode_event(event))

    def write_raw(self, lines: bytes) -> None:
        """Append already-encoded, newline-terminated lines."""
        self._fh.write(lines)
        if self._fh.tell() >= self.segment_bytes:
            self.rotate()

    def flush(self, *, sync: bool = False) -> None:
        self._fh.flush()
        if sync:
            os.fsync(self._fh.fileno())

    def rotate(self) -> None:
        """Seal the current segment and start the next one."""
        self._seal()
        self.seq += 1
        self._fh = open(self._segment_path(), "ab")  # noqa: SIM115

    def _seal(self) -> None:
        self.flush(sync=True)
        self._fh.close()
        Path(str(self._segment_path()) + ".done").touch()

    def close(self) -> None:
        if not self._fh.closed:
            self._seal()

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
