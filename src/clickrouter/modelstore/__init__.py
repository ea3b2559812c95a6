"""Versioned model sets on disk: publish, CURRENT pointer, rollback, integrity."""

from clickrouter.modelstore.manifest import read_manifest, verify, write_manifest
from clickrouter.modelstore.store import ModelStore, StoreBusy, resolve_model_dir

__all__ = [
    "ModelStore",
    "StoreBusy",
    "read_manifest",
    "resolve_model_dir",
    "verify",
    "write_manifest",
]
