"""Where producers write events: one writer protocol, one opener, and the local log.

:class:`EventWriter` is what a producer (the predictor, the simulator) writes
events through; :func:`open_writer` opens one from a target:
``redis://HOST[:PORT]/STREAM`` is a Redis stream
(:class:`~clickrouter.redislog.RedisStreamWriter`), anything else a local
event-log directory (:class:`EventLogWriter`). The consumer reads either with
the sources of :mod:`clickrouter.stream`.

The local event log is a directory of append-only JSON-lines segment files;
:func:`writer_segments` and :func:`read_lines` are how a reader follows them
(the consumer's local source, and the spool reading back its own journal).

Layout: ``<dir>/<writer_id>.<seq:08d>.jsonl``. Each writer (one per process)
owns its own series of segments, so several predictor workers can log into one
directory without locks. A line is one event ending in ``\\n``; a reader must
ignore a trailing partial line (no newline yet) until it is completed. A
segment is never rewritten, only appended to, then left behind when the writer
rotates to the next sequence number; ``<segment>.done`` marks it sealed.

A failed write leaves nothing a reader could take for a record: the bytes it
did write are truncated away and the writer moves on to a new segment (a
reader may already have read past the cut, so appending after it again could
splice a new line onto a stale offset). A segment whose writer was killed in
the middle of a write can end in a partial line; its writer never appends to
it again (a restarted process starts a new segment), so that line stays alone
and a reader reports it as malformed rather than joining it to the next one.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Protocol

from clickrouter.events import Event, encode_event

SEGMENT_RE = re.compile(r"^(?P<writer>[A-Za-z0-9_-]+)\.(?P<seq>\d{8})\.jsonl$")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# write(2) once this much is buffered; flush() writes the rest
DEFAULT_BUFFER_BYTES = 1 << 20
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class EventWriter(Protocol):
    """Appends events to a log; what is buffered is sent by ``flush`` and ``close``."""

    def write(self, event: Event) -> None: ...

    def write_raw(self, lines: bytes) -> None:
        """Append already-encoded, newline-terminated lines."""
        ...

    def flush(self, *, sync: bool = False) -> None:
        """Hand what is buffered to the log (``sync``: to stable storage, where it can)."""
        ...

    def close(self) -> None: ...


def open_writer(target: str | Path, writer_id: str) -> EventWriter:
    """``redis://HOST[:PORT]/STREAM`` -> a Redis stream writer; anything else is a
    log directory, written under ``writer_id``."""
    if str(target).startswith("redis://"):
        from clickrouter.redislog import RedisStreamWriter  # redis only when asked for

        return RedisStreamWriter.from_url(str(target))
    return EventLogWriter(target, writer_id)


class EventLogWriter:
    """Appends events to this writer's current segment; rotates by size.

    ``write``/``write_raw`` buffer in memory; ``flush`` hands the buffer to the
    OS in ``write(2)`` calls (``sync=True`` adds an ``fsync``). A flush that
    fails raises the ``OSError`` after taking back what it wrote, so the
    segment ends at a line boundary; the buffered lines are discarded (the
    caller knows they were not logged). Not thread-safe: give each thread or
    process its own writer id.
    """

    def __init__(
        self,
        directory: str | Path,
        writer_id: str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", writer_id):
            raise ValueError(f"invalid writer id {writer_id!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writer_id = writer_id
        self.segment_bytes = segment_bytes
        self.buffer_bytes = buffer_bytes
        self.seq = self._next_seq()
        self._buffer = bytearray()
        self._fd: int | None = None
        self._size = 0  # bytes of the current segment, all of them whole lines
        self._closed = False
        self._open()

    def _next_seq(self) -> int:
        seqs = [
            int(m["seq"])
            for p in self.directory.iterdir()
            if (m := SEGMENT_RE.match(p.name)) and m["writer"] == self.writer_id
        ]
        return max(seqs, default=-1) + 1  # never append to a previous run's segment

    def _segment_path(self) -> Path:
        return self.directory / f"{self.writer_id}.{self.seq:08d}.jsonl"

    def _open(self) -> None:
        fd = os.open(self._segment_path(), _OPEN_FLAGS, 0o644)
        self._fd, self._size = fd, os.fstat(fd).st_size

    def write(self, event: Event) -> None:
        self.write_raw(encode_event(event))

    def write_raw(self, lines: bytes) -> None:
        """Append already-encoded, newline-terminated lines (buffered)."""
        self._buffer += lines
        if len(self._buffer) >= self.buffer_bytes or (
            self._size + len(self._buffer) >= self.segment_bytes
        ):
            self.flush()

    def append(self, lines: bytes, *, sync: bool = False) -> None:
        """Write ``lines`` (and anything buffered) to the OS now: on return they are
        in the segment; on ``OSError`` none of them is."""
        if self._buffer or self._closed:
            self._buffer += lines
            self.flush(sync=sync)
            return
        self._write_out(lines)  # the usual case: nothing buffered, no copy
        if sync:
            self.flush(sync=True)
        elif self._size >= self.segment_bytes:
            self.rotate()

    def flush(self, *, sync: bool = False) -> None:
        if self._closed:
            raise ValueError("event log writer is closed")
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            self._write_out(data)
        if sync and self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                self._discard_from(self._size - len(data))
                raise
        if self._size >= self.segment_bytes:
            self.rotate()

    def _write_out(self, data: bytes) -> None:
        if self._fd is None:  # a previous rotation could not open the next segment
            self._open()
        assert self._fd is not None
        start = self._size
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError:
            if done:
                self._discard_from(start)
            raise
        self._size = start + len(data)

    def _discard_from(self, start: int) -> None:
        """Take back everything after ``start`` and continue in a new segment."""
        if self._fd is not None:
            with contextlib.suppress(OSError):  # if even this fails, the tail stays alone
                os.ftruncate(self._fd, start)
        self._size = start
        self._next_segment()

    def rotate(self) -> None:
        """Seal the current segment and start the next one."""
        if self._fd is not None:
            self._seal()
        self._next_segment()

    def _next_segment(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self.seq += 1
        self._size = 0
        # opening may fail on a full disk: the next write tries again
        with contextlib.suppress(OSError):
            self._open()

    def _seal(self) -> None:
        assert self._fd is not None
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # the lines are written; a sync is a bonus here
            os.fsync(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        # on a full disk the marker may not fit; the successor segment seals it anyway
        with contextlib.suppress(OSError):
            Path(str(self._segment_path()) + ".done").touch()

    @property
    def path(self) -> Path:
        """The segment being written."""
        return self._segment_path()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush(sync=True)
            if self._fd is not None:
                self._seal()
        finally:
            self._closed = True
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def writer_segments(directory: Path) -> dict[str, list[tuple[str, bool]]]:
    """Per writer, its segment names in order, each with "complete": it will never
    grow, being sealed (``.done``) or followed by a later segment of its writer
    (a writer that crashed never seals; its successor never appends to it)."""
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries if SEGMENT_RE.match(e.name))
    done = {n for n in names if os.path.exists(directory / f"{n}.done")}
    writers: dict[str, list[tuple[str, bool]]] = {}
    for i, name in enumerate(names):
        writer = name.rsplit(".", 2)[0]
        successor = i + 1 < len(names) and names[i + 1].rsplit(".", 2)[0] == writer
        writers.setdefault(writer, []).append((name, name in done or successor))
    return writers


def read_lines(path: Path, start: int, max_bytes: int, *, complete: bool) -> bytes:
    """The whole lines of segment ``path`` from byte ``start``, newlines included:
    about ``max_bytes`` of them (all of a longer first line). The trailing partial
    line is left for a later read, unless the segment is ``complete``: then it will
    never be finished and is returned as the last line. ``b""``: nothing new."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(max_bytes)
        while data and b"\n" not in data and len(data) % max_bytes == 0:
            more = fh.read(max_bytes)  # one line longer than max_bytes
            if not more:
                break
            data += more
    end = data.rfind(b"\n") + 1
    if end == 0 and data and complete:
        end = len(data)  # an unterminated tail that will never complete
    return data[:end]
