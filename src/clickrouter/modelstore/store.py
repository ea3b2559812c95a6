"""A model store: immutable model-directory versions plus an atomic CURRENT pointer.

Layout::

    <store>/versions/<version>/   one model directory per version (campaigns.json,
                                  <campaign_id>.joblib, manifest.json)
    <store>/CURRENT               the live version's name, one line

A version is built under ``<store>/tmp/`` and renamed into ``versions/`` only
when complete; ``CURRENT`` is replaced by writing a temporary file and renaming
it over the old one (atomic on POSIX). A reader therefore never sees a
half-written version nor a half-written pointer.

The store's directories and files are created writable by their owner only
(whatever the umask), so a predictor running as the same user trusts the
pickles in them (:mod:`clickrouter.serving.trust`). With a signing key, each
version's manifest is also signed (``manifest.json.sig``), for predictors
that run as another user.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clickrouter.errors import ClickrouterError, InvalidInput, NotFound
from clickrouter.modelstore.manifest import Manifest
from clickrouter.modelstore.version import read_version, verify

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DIR_MODE = 0o755  # readable by a predictor of another user; writable by the owner only


class ModelStore:
    """Versions of model directories under one root."""

    def __init__(
        self, root: str | Path, *, signing_key: bytes | None = None, durable: bool = True
    ) -> None:
        self.root = Path(root)
        self.signing_key = signing_key  # publishers sign each version's manifest with it
        # False: no fsync before a version is renamed live (still atomic, but a
        # power cut may lose it): for stores thrown away after use, like a replay's
        self.durable = durable
        self.versions_dir = self.root / "versions"
        self.pointer = self.root / "CURRENT"

    @staticmethod
    def is_store(path: str | Path) -> bool:
        return (Path(path) / "versions").is_dir()

    def versions(self) -> list[str]:
        """Published versions, oldest first (names sort by creation time)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir())

    def current(self) -> str | None:
        """The live version's name, or None when nothing is published yet."""
        try:
            name = self.pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def path_of(self, version: str) -> Path:
        path = self.versions_dir / _checked(version)
        if not path.is_dir():
            raise NotFound(f"model store {self.root}: no version {version!r}")
        return path

    def current_path(self) -> Path:
        version = self.current()
        if version is None:
            raise NotFound(f"model store {self.root}: no CURRENT version")
        return self.path_of(version)

    @staticmethod
    def new_version_name() -> str:
        """A fresh, sortable version name (UTC time, microseconds)."""
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        return f"v{stamp}{int(now % 1 * 1e6):06d}Z"

    @contextmanager
    def staging(self, version: str | None = None) -> Iterator[tuple[str, Path]]:
        """Yield (version, temp dir) to fill; on success it is renamed into versions/."""
        version = _checked(version or self.new_version_name())
        tmp_root = self.root / "tmp"
        for directory in (self.root, tmp_root, self.versions_dir):
            directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{version}.", dir=tmp_root))
        try:
            yield version, staging
            _drop_group_and_other_write(staging)
            if self.durable:
                _fsync_tree(staging)
            os.rename(staging, self.versions_dir / version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def set_current(self, version: str) -> None:
        """Point CURRENT at ``version`` atomically."""
        self.path_of(version)
        tmp = self.root / f".CURRENT.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            if self.durable:
                os.fsync(fh.fileno())
        os.replace(tmp, self.pointer)

    def rollback(self, version: str) -> None:
        """Make an older published version live again."""
        self.set_current(version)

    def read(self, version: str) -> Manifest | None:
        """The manifest of a published version (None when it has none)."""
        return read_version(self.path_of(version)).manifest

    def manifest(self, version: str) -> dict[str, Any]:
        """The manifest of a published version as plain JSON values ({} when it has none)."""
        manifest = self.read(version)
        return {} if manifest is None else manifest.as_json()

    def verify(self, version: str) -> list[str]:
        """Problems found checking a version's files against its manifest digests."""
        return verify(self.path_of(version))

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive right to publish into this store (one trainer at a time).

        The lock is an flock on ``<store>/.lock``: the kernel releases it when
        its holder dies, so a SIGKILLed trainer never leaves the store locked.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusy(f"model store {self.root}: another writer holds the lock") from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def clean_staging(self) -> list[str]:
        """Remove what a writer killed mid-publish left behind (call under writer_lock)."""
        removed = []
        tmp_root = self.root / "tmp"
        if tmp_root.is_dir():
            for leftover in tmp_root.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover.name)
        for pointer in self.root.glob(".CURRENT.*.tmp"):
            pointer.unlink(missing_ok=True)
            removed.append(pointer.name)
        return removed

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions (never the live one)."""
        live = self.current()
        doomed = [v for v in self.versions()[:-keep] if v != live] if keep > 0 else []
        for version in doomed:
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)
        return doomed


class StoreBusy(ClickrouterError):
    """Another process is publishing into the same store (HTTP 409)."""

    status = 409


def resolve_model_dir(path: str | Path, version: str | None = None) -> tuple[Path, str | None]:
    """(model directory to load, store version or None) for what a user points at.

    ``path`` is a model directory (``version`` must then be None), or a model
    store: its live version (``CURRENT``), or ``version`` when given. The live
    version is read once, so the directory and the name always agree even while
    a trainer publishes.
    """
    path = Path(path)
    if ModelStore.is_store(path):
        store = ModelStore(path)
        name = version if version is not None else store.current()
        if name is None:
            raise NotFound(f"model store {path}: no CURRENT version (nothing published yet)")
        return store.path_of(name), name
    if version is not None:
        raise InvalidInput(f"{path}: not a model store (no versions/): no version {version!r}")
    return path, None


def _checked(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise InvalidInput(f"invalid model version name {version!r}")
    return version


def _drop_group_and_other_write(root: Path) -> None:
    """A published version is readable by all and writable by its owner only.

    Files carried over from a published version (hard links) were set when it was.
    """
    os.chmod(root, _DIR_MODE)
    for path in root.iterdir():
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_mode & 0o022:
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o022)


def _fsync_tree(root: Path) -> None:
    """fsync every file, then the directories, before the version is renamed live.

    A version holds thousands of files; fsync waits on the disk and releases
    the GIL, so a few threads overlap the waits instead of paying them one by one.
    A file with more than one link is a model carried over from a published
    version (the trainer hard-links unchanged files), whose data was synced
    when that version was published: only its new directory entry needs
    syncing, and the directory fsync below does that. A routine cycle carries
    most of its 5,000 files over, so this skips most of its fsyncs.
    """
    files = [p for p in root.rglob("*") if p.is_file() and p.stat().st_nlink == 1]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(_fsync_path, files))
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_path(directory)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
