"""``manifest.json`` of a model version: what was trained, how well, and file digests.

The manifest is written last into a staged version, after every other file, so
its ``files`` map (name -> sha256) covers the whole directory. Readers (the
ModelBank, ``clickrouter models show``) use the digests to detect corrupt
files; the rest is free-form JSON owned by the trainer (see
:mod:`clickrouter.training.publish` for the keys it writes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from clickrouter.errors import InvalidInput

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every regular file of ``directory`` except the manifest itself."""
    return {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(directory: Path, content: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` = ``content`` + format + per-file sha256; return it."""
    manifest = {"format": MANIFEST_FORMAT, **content, "files": file_digests(directory)}
    text = json.dumps(manifest, indent=1, sort_keys=False, default=str)
    (directory / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a version directory ({} when it has none)."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: manifest must be a JSON object")
    return data


def verify(directory: Path) -> list[str]:
    """Problems found checking every file against the manifest's digests."""
    files = read_manifest(directory).get("files")
    if not isinstance(files, dict):
        return [f"{directory / MANIFEST}: no file digests"]
    problems = []
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems
