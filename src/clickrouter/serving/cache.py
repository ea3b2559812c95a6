"""A compiled-bank cache: compile a model directory once, memory-map it everywhere.

The cache entry of a directory is keyed by the hash of its files' bytes, so a
changed file can never be served from a stale entry. The scoring table is a
``.npy`` file opened with ``mmap_mode="r"``: N predictor processes that load the
same version share one copy of the weights in the page cache instead of each
holding a private one, and a worker starts without loading a single model.

Every training cycle adds an entry (~18 MB at 5,000 campaigns), so a serving
predictor prunes the cache after each reload (:func:`prune_cache`): loading an
entry marks it used (its directory's mtime), and all but the most recently
used ones are deleted. Deleting an entry a process still maps is safe (the
pages live until it unmaps them); one that a process wants again is simply
compiled again. The compile memo beside the entries is pruned with them: an
entry records when its compile started (``memo_since``), and memo entries no
compile has used since the oldest kept entry's started are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.features import FeatureSpace
from clickrouter.serving.assemble import Assembly
from clickrouter.serving.catalog import Campaign
from clickrouter.serving.memo import prune_memo

CACHE_FORMAT = 1
_ENTRY_NAME = re.compile(r"[0-9a-f]{32}")  # directory_key(); the memo and staging dirs differ
STALE_STAGING_SECONDS = 3600.0  # a writer that has not renamed its staging dir by then died


class _Meta(msgspec.Struct):
    format: int
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
    version from it: two copies of one directory are two versions.
    """
    digest = hashlib.sha256(f"clickrouter-bank-{CACHE_FORMAT}".encode())
    digest.update(path.resolve().name.encode() + b"\0")
    # sorted by name (the paths' own order, without slow Path comparisons)
    for file in sorted((p for p in path.iterdir() if p.is_file()), key=lambda p: p.name):
        digest.update(file.name.encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:32]


def load_cached(cache_dir: Path, key: str) -> tuple[Assembly, str] | None:
    """The cached assembly and version for ``key``, or None when absent or unreadable."""
    entry = cache_dir / key
    try:
        meta = msgspec.json.decode((entry / "meta.json").read_bytes(), type=_Meta)
        table = np.load(entry / "table.npy", mmap_mode="r")
    except (OSError, ValueError, msgspec.DecodeError):
        return None
    if meta.format != CACHE_FORMAT:
        return None
    with contextlib.suppress(OSError):  # used now: the pruning keeps recently used entries
        os.utime(entry)
    assembly = Assembly(
        space=FeatureSpace.from_dict(meta.space),
        campaigns=meta.campaigns,
        table=table,
        compiled_cols=np.asarray(meta.compiled_cols, dtype=np.intp),
        generic_cols=np.asarray(meta.generic_cols, dtype=np.intp),
        generic_paths=[Path(p) for p in meta.generic_paths],
        skipped=meta.skipped,
        generic_reasons=meta.generic_reasons,
    )
    return assembly, meta.version


def store_cached(
    cache_dir: Path, key: str, assembly: Assembly, version: str, *, memo_since: float = 0.0
) -> None:
    """Write an entry atomically (temp dir + rename); a concurrent writer may win.

    memo_since: when the compile that produced ``assembly`` started (Unix time).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    if (cache_dir / key).is_dir():
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    np.save(staging / "table.npy", np.ascontiguousarray(assembly.table))
    meta = _Meta(
        format=CACHE_FORMAT,
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
    (staging / "meta.json").write_bytes(msgspec.json.encode(meta))
    try:
        os.rename(staging, cache_dir / key)
    except OSError:  # another process published the same entry first
        for file in staging.iterdir():
            file.unlink()
        staging.rmdir()


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
