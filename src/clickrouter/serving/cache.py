"""A compiled-bank cache: compile a model directory once, memory-map it everywhere.

The cache entry of a directory is keyed by the hash of its files' bytes, so a
changed file can never be served from a stale entry: the catalogue is one of
them, so a page added, retired or retargeted gives a new key, and the entry's
offer columns are always the catalogue's. The scoring table is a
``.npy`` file opened with ``mmap_mode="r"``: N predictor processes that load the
same version share one copy of the weights in the page cache instead of each
holding a private one, and a worker starts without loading a single model.

Every training cycle adds an entry (a float64 table of n_slots x n_offers), so a serving
predictor prunes the cache after each reload (:func:`prune_cache`): loading an
entry marks it used (its directory's mtime), and all but the most recently
used ones are deleted. Deleting an entry a process still maps is safe (the
pages live until it unmaps them); one that a process wants again is simply
compiled again. The compile memo beside the entries is pruned with them: an
entry records when its compile started (``memo_since``), and memo entries no
compile has used since the oldest kept entry's started are deleted.

The directory is private and every entry authenticated
(:mod:`clickrouter.serving.cachedir`): ``meta.json`` records the key it was
compiled for and the sha256 of the table's bytes, and ``meta.mac`` is an HMAC
of both under the cache's secret. An entry that fails either check (changed,
bit-flipped, written by an older format) is deleted and compiled again, never
served. Nothing in the cache is a pickle: the table is read with
``allow_pickle=False``, the rest is JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.catalogue import Campaign
from clickrouter.features import FeatureSpace
from clickrouter.modelstore import KNOWN, file_sha256
from clickrouter.serving.assemble import Assembly
from clickrouter.serving.cachedir import cache_secret, mac
from clickrouter.serving.memo import prune_memo

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 3: columns are offers (campaign, landing page)
_ENTRY_DOMAIN = b"clickrouter-bank-entry"
_ENTRY_NAME = re.compile(r"[0-9a-f]{32}")  # directory_key(); the memo and staging dirs differ
STALE_STAGING_SECONDS = 3600.0  # a writer that has not renamed its staging dir by then died


class _Meta(msgspec.Struct):
    format: int
    key: str  # the directory_key() the entry was compiled for: an entry cannot move
    table_sha256: str  # of the table's float64 bytes, C order
    table_shape: list[int]
    version: str
    space: dict[str, Any]
    campaigns: list[Campaign]
    compiled_cols: list[int]
    generic_cols: list[int]
    generic_paths: list[str]
    skipped: list[str]
    generic_reasons: dict[str, str]
    # Unix time the compile started: every memo entry it read or wrote was used
    # at or after it (0: unknown, so the memo is not pruned while it is kept)
    memo_since: float = 0.0


class _MemoSince(msgspec.Struct):
    memo_since: float = 0.0


def directory_key(path: Path) -> str:
    """Hash of every file of a model directory (names and bytes) and of its name.

    The name is in the key because a directory without a manifest takes its
    version from it: two copies of one directory are two versions. A file
    this process hashed before and unchanged since is not read again
    (:data:`~clickrouter.modelstore.digests.KNOWN`).
    """
    digest = hashlib.sha256(f"clickrouter-bank-{CACHE_FORMAT}".encode())
    digest.update(path.resolve().name.encode() + b"\0")
    # sorted by name (the paths' own order); a directory entry knows whether it is a
    # file without a stat of its own, so each file costs one stat
    with os.scandir(path) as found:
        files = sorted((entry for entry in found if entry.is_file()), key=_entry_name)
    for file in files:
        digest.update(file.name.encode() + b"\0")
        digest.update(bytes.fromhex(KNOWN.get(file.stat()) or file_sha256(Path(file.path))))
    return digest.hexdigest()[:32]


def _entry_name(entry: os.DirEntry[str]) -> str:
    return entry.name


def load_cached(cache_dir: Path, key: str, root: Path | None = None) -> tuple[Assembly, str] | None:
    """The cached assembly and version for ``key``; None when absent or not authentic.

    root: the model directory being loaded; the generic models are its files
    (the key covers their names and bytes), wherever the entry's compile read them.

    Raises :class:`~clickrouter.serving.cachedir.UnsafeCacheDir` when others
    could write ``cache_dir``. An entry that fails its checks is deleted.
    """
    secret = cache_secret(cache_dir)
    entry = cache_dir / key
    if not entry.is_dir():
        return None
    loaded: tuple[_Meta, np.ndarray] | None = None
    try:  # an entry is published whole (one rename): a missing file is no accident
        meta_bytes = (entry / "meta.json").read_bytes()
        tag = (entry / "meta.mac").read_bytes()
    except OSError as exc:
        problem = f"incomplete: {exc.filename}: {exc.strerror}"
    else:
        problem, loaded = _authentic(entry, key, secret, meta_bytes, tag)
    if loaded is None:
        log.warning("bank cache entry %s refused and compiled again: %s", entry, problem)
        _discard(entry)
        return None
    meta, table = loaded
    with contextlib.suppress(OSError):  # used now: the pruning keeps recently used entries
        os.utime(entry)
    assembly = Assembly(
        space=FeatureSpace.from_dict(meta.space),
        campaigns=meta.campaigns,
        table=table,
        compiled_cols=np.asarray(meta.compiled_cols, dtype=np.intp),
        generic_cols=np.asarray(meta.generic_cols, dtype=np.intp),
        generic_paths=[
            Path(p) if root is None else root / Path(p).name for p in meta.generic_paths
        ],
        skipped=meta.skipped,
        generic_reasons=meta.generic_reasons,
    )
    return assembly, meta.version


def _authentic(
    entry: Path, key: str, secret: bytes, meta_bytes: bytes, tag: bytes
) -> tuple[str, tuple[_Meta, np.ndarray] | None]:
    """(why not, None) or ("", (meta, mapped table)) for an entry's files."""
    if not hmac.compare_digest(tag, mac(secret, _ENTRY_DOMAIN, key.encode(), meta_bytes)):
        return "meta.json does not match its MAC (changed, or another cache's)", None
    try:
        meta = msgspec.json.decode(meta_bytes, type=_Meta)
        table = np.load(entry / "table.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, msgspec.DecodeError) as exc:
        return f"unreadable: {exc}", None
    if meta.format != CACHE_FORMAT or meta.key != key:
        return f"format {meta.format} / key {meta.key}", None
    if table.dtype != np.float64 or list(table.shape) != meta.table_shape:
        return f"table {table.dtype} {table.shape} is not the one recorded", None
    if not table.flags.c_contiguous or _table_digest(table) != meta.table_sha256:
        return "table.npy differs from the sha256 recorded in meta.json", None
    return "", (meta, table)


def _table_digest(table: np.ndarray) -> str:
    """sha256 of the table's bytes as mapped: what is checked is what is served."""
    data = np.ascontiguousarray(table)
    # a table without columns (every model on the generic path) has no bytes to view
    return hashlib.sha256(data.data.cast("B") if data.size else b"").hexdigest()


def _discard(entry: Path) -> None:
    """Move a refused entry out of the way (atomically), then delete it."""
    doomed = entry.with_name(f".{entry.name}.refused.{os.getpid()}")
    try:
        os.rename(entry, doomed)
    except OSError:  # gone already: another process discarded or pruned it
        return
    shutil.rmtree(doomed, ignore_errors=True)


def store_cached(
    cache_dir: Path, key: str, assembly: Assembly, version: str, *, memo_since: float = 0.0
) -> None:
    """Write an entry atomically (temp dir + rename); a concurrent writer may win.

    memo_since: when the compile that produced ``assembly`` started (Unix time).
    """
    secret = cache_secret(cache_dir)
    if (cache_dir / key).is_dir():
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    table = np.ascontiguousarray(assembly.table, dtype=np.float64)
    np.save(staging / "table.npy", table, allow_pickle=False)
    meta = _Meta(
        format=CACHE_FORMAT,
        key=key,
        table_sha256=_table_digest(table),
        table_shape=list(table.shape),
        version=version,
        space=assembly.space.to_dict(),
        campaigns=assembly.campaigns,
        compiled_cols=assembly.compiled_cols.tolist(),
        generic_cols=assembly.generic_cols.tolist(),
        generic_paths=[str(p.resolve()) for p in assembly.generic_paths],
        skipped=assembly.skipped,
        generic_reasons=assembly.generic_reasons,
        memo_since=memo_since,
    )
    meta_bytes = msgspec.json.encode(meta)
    (staging / "meta.json").write_bytes(meta_bytes)
    (staging / "meta.mac").write_bytes(mac(secret, _ENTRY_DOMAIN, key.encode(), meta_bytes))
    try:
        os.rename(staging, cache_dir / key)
    except OSError:  # another process published the same entry first
        shutil.rmtree(staging, ignore_errors=True)


def prune_cache(cache_dir: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recently used entries; return the deleted keys.

    Also deletes staging directories older than :data:`STALE_STAGING_SECONDS`
    (left by a writer that died), and the compile memo's entries that no
    compile used since the oldest kept entry's compile started: the models of
    the kept versions, and of any compile since, stay memoised.
    """
    if keep < 1:
        raise ValueError(f"keep: expected at least 1 entry, got {keep}")
    entries = sorted(
        ((_mtime(p), p) for p in _children(cache_dir) if _ENTRY_NAME.fullmatch(p.name)),
        key=lambda pair: pair[0],
        reverse=True,
    )
    deleted = []
    for _, entry in entries[keep:]:
        shutil.rmtree(entry, ignore_errors=True)
        deleted.append(entry.name)
    kept = [entry for _, entry in entries[:keep]]
    if kept:
        prune_memo(cache_dir, min(_memo_since(entry) for entry in kept))
    cutoff = time.time() - STALE_STAGING_SECONDS
    for staging in _children(cache_dir):
        if staging.name.startswith(".") and _mtime(staging) < cutoff:
            shutil.rmtree(staging, ignore_errors=True)
    return deleted


def _memo_since(entry: Path) -> float:
    """When the entry's compile started; 0.0 (prune nothing) when unknown or unreadable."""
    try:
        return msgspec.json.decode((entry / "meta.json").read_bytes(), type=_MemoSince).memo_since
    except (OSError, msgspec.DecodeError):
        return 0.0


def _children(cache_dir: Path) -> list[Path]:
    try:
        return [p for p in cache_dir.iterdir() if p.is_dir()]
    except OSError:  # no cache yet
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # deleted meanwhile by another process's pruning
        return float("inf")  # sorts as recently used: nothing more to delete there
