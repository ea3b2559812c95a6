"""Follow a local event-log directory (see :mod:`clickrouter.eventlog`).

Offsets are ``{segment file name: byte offset}``. Each poll reads up to
``chunk_bytes`` of complete lines from each writer's current segment (its
oldest one not yet finished), writers in sorted order, so writers advance
together in event time. A segment is finished when read to its end and either
sealed (``.done``) or followed by a later segment of its writer (a writer that
crashed never seals; its successor never appends to it). What a poll returns
depends only on the offsets and the files' contents, so a run restarted from
committed offsets reads exactly the sequence an uninterrupted run reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clickrouter.errors import InvalidInput
from clickrouter.eventlog import read_lines, writer_segments
from clickrouter.stream.lines import LineView
from clickrouter.stream.source import Chunk, check_kind

DEFAULT_CHUNK_BYTES = 1 << 18


class LocalLogSource:
    """Reads every writer's segments in ``directory``, following new ones."""

    def __init__(self, directory: str | Path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InvalidInput(f"--source: {str(self.directory)!r} is not a directory")
        self.chunk_bytes = chunk_bytes
        self.offsets: dict[str, int] = {}
        self._finished: set[str] = set()

    def describe(self) -> str:
        return f"event log {self.directory}"

    def restore(self, position: Mapping[str, Any]) -> None:
        check_kind(position, "local", self.describe())
        self.offsets = {str(k): int(v) for k, v in position.get("segments", {}).items()}
        self._finished.clear()

    def position(self) -> dict[str, Any]:
        return {"kind": "local", "segments": dict(self.offsets)}

    def acknowledge(self, position: Mapping[str, Any] | None = None) -> None:
        """Nothing to do: the committed offsets are the acknowledgement."""

    def close(self) -> None:
        """Files are opened per read; nothing is held."""

    def finished(self) -> list[str]:
        """Segments read to their end that will never grow (sealed or superseded)."""
        return sorted(self._finished)

    def forget(self, name: str) -> None:
        """Drop a finished segment from the offsets (its file was deleted)."""
        self._finished.discard(name)
        self.offsets.pop(name, None)

    def poll(self) -> list[Chunk]:
        chunks = []
        for segments in self._writers().values():
            for name, complete in segments:
                chunk = self._read(name, complete)
                if chunk is not None:
                    chunks.append(chunk)
                    break  # one chunk per writer per poll
                if name not in self._finished:
                    break  # the writer's current segment has nothing new yet
        return chunks

    def _writers(self) -> dict[str, list[tuple[str, bool]]]:
        """Per writer, its unfinished segments in order, each with "is complete"."""
        return {
            writer: [(name, complete) for name, complete in segments if name not in self._finished]
            for writer, segments in writer_segments(self.directory).items()
        }

    def _read(self, name: str, complete: bool) -> Chunk | None:
        start = self.offsets.get(name, 0)
        body = read_lines(self.directory / name, start, self.chunk_bytes, complete=complete)
        if not body:
            if complete:
                self._finished.add(name)
            return None
        self.offsets[name] = start + len(body)
        lines = LineView(body)  # lines are cut out only when one is needed
        return Chunk(lines, body, _positions(name, start, lines))


def _positions(name: str, start: int, lines: LineView) -> Any:
    def position_of(i: int) -> str:  # only called for dead letters: no precomputation
        return f"{name}:{start + lines.offset(i)}"

    return position_of
