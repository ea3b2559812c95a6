"""Loading and validating one campaign model file (``.joblib`` or ``.skops``).

Every check names the file, so an operator facing a directory of 5,000 models
knows which one to fix. Checks: the file loads (not corrupt or truncated), the
object is a fitted binary classifier with ``predict_proba``, and it was fitted
on a frame whose columns are canonical profile fields, and optionally the
offer's landing page id (:data:`~clickrouter.catalogue.PAGE_INPUT`).

Unpickling runs code, so whether a ``.joblib`` file may be loaded at all is
decided before, from its source (:mod:`clickrouter.serving.trust`); callers
pass the bytes they judged. A ``.skops`` file is loaded by skops, which builds
only the types it is told to trust: skops' own list (plain containers and
numbers, numpy dtypes and ufuncs, scikit-learn estimators) plus
:data:`SKOPS_EXTRA_TYPES`, named one by one. No function is on either list but
numpy/scipy ufuncs, so a file naming ``builtins.eval`` or ``numpy.save`` is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import joblib
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.modelstore import sha256_hex
from clickrouter.profile import CANONICAL_FIELDS

MODEL_SUFFIXES = (".joblib", ".skops")
MODEL_INPUTS = (*CANONICAL_FIELDS, PAGE_INPUT)  # the columns a campaign model may read
PICKLE_SUFFIXES = (".joblib",)
# present in every joblib.dump stream that carries numpy arrays out of band
_JOBLIB_ARRAY_MARKER = b"joblib.numpy_pickle"
# Types scikit-learn classifiers are made of that skops does not trust by itself:
# tree structures, nearest-neighbour indexes, calibrators, optimiser state. Each is
# a data structure: building one runs no code named by the file.
SKOPS_EXTRA_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    }
)


class ModelFileError(Exception):
    """A model file failed a check; the message names the file and the reason."""


def load_model(path: Path, data: bytes | None = None, *, sha256: str | None = None) -> Any:
    """Load and validate one campaign model; raise :class:`ModelFileError`.

    data: the file's bytes as the caller read (and judged) them; read from
        ``path`` when None. A ``.joblib`` file must come from a trusted source.
    sha256: the digest the bytes must have (a file read again after it was
        checked: refused if it changed meanwhile).
    """
    if data is None:
        data = _read_bytes(path)
    if sha256 is not None and sha256_hex(data) != sha256:
        raise ModelFileError(f"{path}: changed since it was checked (sha256 differs)")
    model = _read(path, data)
    _check_classifier(path, model)
    return model


def model_columns(model: Any) -> list[str]:
    """The profile columns a validated model reads, in its fitted order."""
    return [str(c) for c in model.feature_names_in_]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc.strerror}") from None


def _read(path: Path, data: bytes) -> Any:
    try:
        if path.suffix == ".skops":
            return _read_skops(path, data)
        return _read_joblib(data)
    except ModelFileError:
        raise
    except Exception as exc:  # unpickling can raise anything on a corrupt file
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise ModelFileError(
            f"{path}: cannot load model (corrupt or truncated?): {reason}"
        ) from None


def _read_joblib(data: bytes) -> Any:
    """joblib.load, taking the C unpickler when the bytes are a plain pickle.

    ``joblib.load`` unpickles in pure Python (its unpickler is a subclass that
    restores arrays joblib wrote out of band); a plain pickle (as the trainer
    writes) loads the same objects several times faster through ``pickle``.
    """
    if _JOBLIB_ARRAY_MARKER not in data:
        try:
            return pickle.loads(data)
        except Exception:  # compressed or otherwise joblib-specific: let joblib read it
            pass
    return joblib.load(io.BytesIO(data))


def _read_skops(path: Path, data: bytes) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=data)
    refused = sorted(t for t in untrusted if t not in SKOPS_EXTRA_TYPES)
    if refused:
        raise ModelFileError(
            f"{path}: refusing types skops does not trust and no campaign model needs: {refused}"
        )
    return sio.loads(data, trusted=untrusted)


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
            f"with columns from {list(MODEL_INPUTS)}"
        )
    missing = [str(c) for c in names if c not in MODEL_INPUTS]
    if missing:
        raise ModelFileError(
            f"{path}: model expects columns {missing} that a profile does not have "
            f"(profile columns: {list(CANONICAL_FIELDS)}, and {PAGE_INPUT!r}: the page id)"
        )
