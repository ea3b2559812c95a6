"""Loading and validating one campaign model file (``.joblib`` or ``.skops``).

Every check names the file, so an operator facing a directory of 5,000 models
knows which one to fix. Checks: the file loads (not corrupt or truncated), the
object is a fitted binary classifier with ``predict_proba``, and it was fitted
on a frame whose columns are canonical profile fields.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import joblib
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from clickrouter.profile import CANONICAL_FIELDS

MODEL_SUFFIXES = (".joblib", ".skops")
# present in every joblib.dump stream that carries numpy arrays out of band
_JOBLIB_ARRAY_MARKER = b"joblib.numpy_pickle"
# skops refuses to build objects of types it has not been told to trust; we
# trust the scientific stack whose objects a campaign model is made of.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


class ModelFileError(Exception):
    """A model file failed a check; the message names the file and the reason."""


def load_model(path: Path) -> Any:
    """Load and validate one campaign model; raise :class:`ModelFileError`."""
    model = _read(path)
    _check_classifier(path, model)
    return model


def model_columns(model: Any) -> list[str]:
    """The profile columns a validated model reads, in its fitted order."""
    return [str(c) for c in model.feature_names_in_]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".skops":
            return _read_skops(path)
        return _read_joblib(path)
    except ModelFileError:
        raise
    except Exception as exc:  # unpickling can raise anything on a corrupt file
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise ModelFileError(
            f"{path}: cannot load model (corrupt or truncated?): {reason}"
        ) from None


def _read_joblib(path: Path) -> Any:
    """joblib.load, taking the C unpickler when the file is a plain pickle.

    ``joblib.load`` unpickles in pure Python (its unpickler is a subclass that
    restores arrays joblib wrote out of band); a plain pickle (as the trainer
    writes) loads the same objects several times faster through ``pickle``.
    """
    data = path.read_bytes()
    if _JOBLIB_ARRAY_MARKER not in data:
        try:
            return pickle.loads(data)
        except Exception:  # compressed or otherwise joblib-specific: let joblib read it
            pass
    return joblib.load(path)


def _read_skops(path: Path) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise ModelFileError(f"{path}: refusing untrusted types {refused}")
    return sio.load(path, trusted=untrusted)


def _check_classifier(path: Path, model: Any) -> None:
    if not hasattr(model, "predict_proba") or not hasattr(model, "fit"):
        raise ModelFileError(
            f"{path}: {type(model).__name__} is not a classifier with predict_proba"
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ModelFileError(f"{path}: {type(model).__name__} is not fitted") from None
    except TypeError as exc:
        raise ModelFileError(f"{path}: not an estimator: {exc}") from None
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        n = "no" if classes is None else len(classes)
        raise ModelFileError(f"{path}: expected a binary classifier, found {n} classes")
    _check_columns(path, model)


def _check_columns(path: Path, model: Any) -> None:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise ModelFileError(
            f"{path}: model was fitted without column names; fit it on a profile frame "
            f"with columns from {list(CANONICAL_FIELDS)}"
        )
    missing = [str(c) for c in names if c not in CANONICAL_FIELDS]
    if missing:
        raise ModelFileError(
            f"{path}: model expects columns {missing} that a profile does not have "
            f"(profile columns: {list(CANONICAL_FIELDS)})"
        )
