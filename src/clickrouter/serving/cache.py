"""A compiled-bank cache: compile a model directory once, memory-map it everywhere.

The cache entry of a directory is keyed by the hash of its files' bytes, so a
changed file can never be served from a stale entry. The scoring table is a
``.npy`` file opened with ``mmap_mode="r"``: N predictor processes that load the
same version share one copy of the weights in the page cache instead of each
holding a private one, and a worker starts without loading a single model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.features import FeatureSpace
from clickrouter.serving.assemble import Assembly
from clickrouter.serving.catalog import Campaign

CACHE_FORMAT = 1


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


def store_cached(cache_dir: Path, key: str, assembly: Assembly, version: str) -> None:
    """Write an entry atomically (temp dir + rename); a concurrent writer may win."""
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
    )
    (staging / "meta.json").write_bytes(msgspec.json.encode(meta))
    try:
        os.rename(staging, cache_dir / key)
    except OSError:  # another process published the same entry first
        for file in staging.iterdir():
            file.unlink()
        staging.rmdir()
