"""Crash-safe file operations: write to a temporary name, fsync, rename.

A rename within one directory is atomic on POSIX, so a reader sees either the
old file or the complete new one. ``fsync`` of the file (before the rename) and
of its directory (after) makes the new name survive a power loss, not only a
killed process.
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: Path) -> Path:
    """The temporary sibling ``path`` is written under before its rename."""
    return path.with_name(path.name + TMP_SUFFIX)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that no reader sees a partial file."""
    tmp = tmp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
