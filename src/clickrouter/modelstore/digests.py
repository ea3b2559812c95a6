"""The sha256 of a version's files: one function computes it, one memo remembers it.

A manifest lists the sha256 of every file of its version; the publisher
computes it from the bytes it writes, the loaders from the bytes they read,
and all of them through :func:`sha256_hex`.

Versions are immutable and share unchanged files as hard links, so one file
is hashed again and again: by the bank cache's key, by the loader, at every
reload. :data:`KNOWN` remembers, per process, the digest of a file under its
stat identity (device, inode, size, modification time in ns). Writing to a
file or replacing it changes its identity. The change time is left out: every
new hard link (each version carrying the file over) changes it, as git's
``core.trustctime = false`` notes. What is lost is a rewrite whose writer put
the modification time back: only someone allowed to write the file can do
that, and the loaders then take it for the bytes that were hashed (the model
those were, never the new bytes unpickled). File times tick coarsely (a few
ms), so two writes in one tick could leave the same identity: as git does
with its index, a file modified less than :data:`SETTLED_NS` before it was
hashed is not remembered (hashed again next time).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from pathlib import Path

Identity = tuple[int, int, int, int]
SETTLED_NS = 2_000_000_000


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of ``data``: the digest a manifest lists."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes (remembered under its stat identity)."""
    with open(path, "rb") as fh:
        before = os.fstat(fh.fileno())
        data = fh.read()
        after = os.fstat(fh.fileno())
    digest = sha256_hex(data)
    if identity(before) == identity(after):  # not written to while it was read
        KNOWN.remember(after, digest)
    return digest


def identity(info: os.stat_result) -> Identity:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class KnownDigests:
    """Digests of files by stat identity, the ``limit`` most recently used ones."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._digests: OrderedDict[Identity, str] = OrderedDict()

    def remember(self, info: os.stat_result, digest: str) -> None:
        """Remember the digest of the bytes of the file ``info`` describes (if settled)."""
        if time.time_ns() - info.st_mtime_ns < SETTLED_NS:
            return
        key = identity(info)
        self._digests[key] = digest
        self._digests.move_to_end(key)
        while len(self._digests) > self.limit:
            self._digests.popitem(last=False)

    def get(self, info: os.stat_result) -> str | None:
        """The digest of the file ``info`` describes, if its bytes were hashed unchanged."""
        return self._digests.get(identity(info))

    def clear(self) -> None:
        self._digests.clear()


KNOWN = KnownDigests()
