"""A write cut short by a full disk leaves no partial line in the event log, and a
reader never joins what was cut off to the record written next."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from clickrouter.eventlog import EventLogWriter
from clickrouter.stream.local_source import LocalLogSource
from serving.http.durability_support import (
    fill,
    small_disk_fixture,  # noqa: F401 - a fixture
)


def batch(start: int, n: int) -> bytes:
    return b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 200) for i in range(start, start + n))


def read_lines(directory: Path) -> list[bytes]:
    source = LocalLogSource(directory)
    lines: list[bytes] = []
    while chunks := source.poll():
        lines.extend(line for chunk in chunks for line in chunk.lines)
    return lines


def test_a_write_cut_short_is_taken_back_and_the_log_goes_on(small_disk: Path) -> None:
    log_dir = small_disk / "events"
    writer = EventLogWriter(log_dir, "w1")
    writer.append(batch(0, 10))
    first = writer.path
    reader = LocalLogSource(log_dir)
    assert len([line for chunk in reader.poll() for line in chunk.lines]) == 10
    fill(small_disk / "ballast", leave=6 * 1024)  # room for part of the next batch only
    with pytest.raises(OSError) as full:
        writer.append(batch(10, 100))  # ~22 KiB: cut short by the disk
    assert full.value.errno == errno.ENOSPC
    assert first.read_bytes() == batch(0, 10)  # what did fit was taken back
    assert writer.path != first  # and the writer moved on: a reader may have read past the cut
    (small_disk / "ballast").unlink()
    writer.append(batch(110, 5))
    writer.close()
    lines = read_lines(log_dir)
    assert lines == batch(0, 10).splitlines() + batch(110, 5).splitlines()
    more = [line for chunk in reader.poll() for line in chunk.lines]  # the earlier reader too
    assert more == batch(110, 5).splitlines()
