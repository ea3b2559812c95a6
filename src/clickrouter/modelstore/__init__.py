"""Versioned model sets on disk: publish, CURRENT pointer, rollback, integrity."""

from clickrouter.modelstore.store import ModelStore, resolve_model_dir

__all__ = ["ModelStore", "resolve_model_dir"]
