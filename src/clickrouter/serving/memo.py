"""Per-file compile memo: a model file's compiled form, reused while its bytes are unchanged.

Between two training cycles most of the 5,000 model files of a version are
carried over byte for byte. Unpickling and probing them again is most of a
reload, so every model that compiled is remembered, under the sha256 of its
file's bytes, as what assembly needs from it without the model itself:

- its columns and the logit at the probe baseline (every field OOV or 0),
- per field, the values it lists (its encoders' categories; the whole domain
  of a numeric field) and the contribution of each. A value it does not list
  contributes exactly 0.0 in any space: it reaches the model as an unknown
  value, exactly like the baseline's OOV sentinel.
- for a model that reads the landing page, the page ids its encoders list and
  the number of each (and of the campaign's other pages, all 0.0); an
  unlisted page id, like an unlisted profile value, adds exactly 0.0, so a
  catalogue that adds, drops or reorders pages reuses the entry.

That last point only holds for models whose encoders see the raw profile
values: an imputer in front of an encoder could map a value the model does not
list onto one it does. Such models are never memoised, and a model is checked
on the space it was compiled on (no unlisted value moved its logit). Probe
logits depend on a probe row's content only (see :meth:`Prober.compile`), so an
entry laid out on a grown space gives the contributions, bit for bit, that
probing the model on that space would.

The lists of values ("layouts") are shared by every model fitted with the same
encoders, so they are stored once each, named by their hash. The memo lives in
the bank cache directory under a name that includes the library versions: a
new scikit-learn may unpickle or validate the same bytes differently.

Every file ends with an HMAC (under the cache's secret, see
:mod:`clickrouter.serving.cachedir`) of its name and content: an entry that was
changed, or copied under another file's digest, is ignored and the model
compiled from its file again. Entries are msgpack, never pickles.

Reading or writing an entry marks it used (its file's mtime), so the cache's
pruning can delete the entries no recent compile used (:func:`prune_memo`):
every training cycle adds the files of its retrained campaigns, and without
pruning the memo grows for as long as the predictor runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import scipy
import sklearn

from clickrouter.catalogue import PAGE_INPUT
from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS
from clickrouter.serving.cachedir import cache_secret, mac
from clickrouter.serving.compiler import (
    CompiledModel,
    categories_by_field,
    has_imputer,
    page_categories,
)

log = logging.getLogger(__name__)

MEMO_FORMAT = 2
_MAC_BYTES = 32
_MEMO_DOMAIN = b"clickrouter-memo"


class _Forged(Exception):
    """A memo file whose MAC does not match its name and content."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


class FieldWeights(msgspec.Struct, frozen=True):
    layout: str  # hash naming the list of values the weights belong to
    weights: bytes  # float64 contribution of each listed value, in list order


class MemoEntry(msgspec.Struct, frozen=True):
    """Everything assembly needs from one compiled model file."""

    columns: list[str]
    intercept: float
    fields: dict[str, FieldWeights]
    listed_pages: list[str] = []  # the page ids its encoders know (models reading the page)
    pages: dict[str, float] = {}  # the logit number of each page id it was probed with


class CompileMemo:
    """The memo directory of a bank cache; every file is written atomically and authenticated."""

    def __init__(self, cache_dir: Path) -> None:
        self._secret = cache_secret(Path(cache_dir))
        self.root = Path(cache_dir) / f"memo-{_environment_tag()}"
        self._layouts: dict[str, list[Any]] = {}

    def get(self, digest: str, suffix: str) -> MemoEntry | None:
        """The entry of a file's bytes, if it and every layout it names are authentic.

        An entry this process authenticated is not read again while its file
        keeps the stat identity it had then (rewriting it changes that).
        """
        path = self.root / f"{digest}{suffix}.memo"
        entry = _VERIFIED.get(path)
        if entry is not None:
            return entry
        try:
            entry = msgspec.msgpack.decode(self._read(path), type=MemoEntry)
            for weights in entry.fields.values():
                self.values(weights.layout)
        except (OSError, msgspec.DecodeError):
            return None
        except _Forged as forged:  # compiled from its file again, and written afresh
            log.warning("compile memo file %s refused: its MAC does not match", forged.path)
            with contextlib.suppress(OSError):
                forged.path.unlink()
            return None
        _VERIFIED.remember(path, entry)
        return entry

    def values(self, layout: str) -> list[Any]:
        """The values a layout lists (raises OSError, DecodeError or _Forged)."""
        if layout not in self._layouts:
            data = self._read(self.root / f"layout-{layout}.values")
            self._layouts[layout] = msgspec.msgpack.decode(data, type=list[str | int])
        return self._layouts[layout]

    def categories(self, entry: MemoEntry) -> dict[str, set[str]]:
        """The categories the model's encoders know, per categorical field."""
        return {
            f: {str(v) for v in self.values(w.layout)}
            for f, w in entry.fields.items()
            if f in CATEGORICAL_FIELDS
        }

    def put(self, digest: str, suffix: str, entry: MemoEntry) -> None:
        self._write(self.root / f"{digest}{suffix}.memo", msgspec.msgpack.encode(entry))

    def put_layout(self, layout: str, values: list[Any]) -> None:
        if layout not in self._layouts:
            self._write(self.root / f"layout-{layout}.values", msgspec.msgpack.encode(values))
            self._layouts[layout] = values

    def _tag(self, target: Path, payload: bytes) -> bytes:
        return mac(self._secret, _MEMO_DOMAIN, target.name.encode(), payload)

    def _read(self, path: Path) -> bytes:
        data = path.read_bytes()
        payload, tag = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
        if len(data) < _MAC_BYTES or not hmac.compare_digest(tag, self._tag(path, payload)):
            raise _Forged(path)
        return payload

    def _write(self, target: Path, data: bytes) -> None:
        if target.exists():
            _mark_used(target)  # written by another compile: used by this one too
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=".memo.", dir=self.root)
        with os.fdopen(fd, "wb") as out:
            out.write(data + self._tag(target, data))
        os.replace(staging, target)


class _Verified:
    """Entries this process authenticated, under their file's identity when it was marked used.

    Marking an entry used sets its modification time to a precise instant, so
    a file rewritten since (whose time the file system sets, in coarse ticks)
    no longer matches and is read and authenticated again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[Path, tuple[MemoEntry, tuple[int, int, int, int]]] = (
            OrderedDict()
        )

    def get(self, path: Path) -> MemoEntry | None:
        """The entry of ``path`` if its file is unchanged (then marked used again)."""
        known = self._entries.get(path)
        if known is None:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        entry, identity = known
        if _identity(info) != identity:
            del self._entries[path]
            return None
        self.remember(path, entry, info)
        return entry

    def remember(self, path: Path, entry: MemoEntry, info: os.stat_result | None = None) -> None:
        """Mark ``path`` used now and remember its entry under the file's new identity."""
        now = time.time_ns()
        try:
            os.utime(path, ns=(now, now))
            info = info or os.stat(path)
        except OSError:  # deleted meanwhile: the next compile writes it again
            self._entries.pop(path, None)
            return
        self._entries[path] = (entry, (info.st_dev, info.st_ino, info.st_size, now))
        self._entries.move_to_end(path)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


# a few versions' worth of a 5,000-campaign bank (an entry is a few KB)
_VERIFIED = _Verified(limit=20_000)


def _mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):  # deleted meanwhile: the next compile writes it again
        os.utime(path)


def prune_memo(cache_dir: Path, used_before: float) -> int:
    """Delete the memo entries last used before ``used_before`` (a Unix time); their count.

    Covers the memo of every library environment in ``cache_dir`` (an upgrade
    leaves the old one unused) and the staging files of writers that died.
    Layouts are kept: they are few and small, and every entry names one.
    Deleting an entry a compile has already read is harmless (it holds the
    decoded entry); a later compile that needs it compiles the model again.
    """
    deleted = 0
    for root in Path(cache_dir).glob("memo-*"):
        for path in _files(root):
            if not (path.name.endswith(".memo") or path.name.startswith(".memo.")):
                continue
            with contextlib.suppress(OSError):  # gone already: another process pruned it
                if path.stat().st_mtime < used_before:
                    path.unlink()
                    deleted += 1
    return deleted


def _files(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError:
        return []


class Layouts:
    """Slots of value lists on one space, computed once per distinct list."""

    def __init__(self, space: FeatureSpace, memo: CompileMemo) -> None:
        self.space = space
        self.memo = memo
        self._slots: dict[str, np.ndarray | None] = {}
        self._by_values: dict[tuple[str, frozenset[Any]], tuple[str, np.ndarray]] = {}

    def slots(self, field: str, layout: str) -> np.ndarray | None:
        """Global slots of a layout's values on this space (None: one is missing)."""
        if layout not in self._slots:
            start = self.space.field_slots(field).start
            local = [self.space.local_index(field, v) for v in self.memo.values(layout)]
            fits = all(local)
            self._slots[layout] = np.asarray(local, dtype=np.intp) + start if fits else None
        return self._slots[layout]

    def of_values(self, field: str, listed: frozenset[Any]) -> tuple[str, np.ndarray]:
        """(layout, global slots) of the values a model lists for ``field``, in slot order."""
        key = (field, listed)
        if key not in self._by_values:
            block = self.space.field_slots(field)
            vocabulary = self.space.vocabularies[field]
            local = [i for i, v in enumerate(vocabulary) if i and v in listed]
            values = [vocabulary[i] for i in local]
            layout = hashlib.sha256(msgspec.msgpack.encode([field, values])).hexdigest()[:32]
            self.memo.put_layout(layout, values)
            self._by_values[key] = (layout, np.asarray(local, dtype=np.intp) + block.start)
        return self._by_values[key]


def compiled_from(entry: MemoEntry, layouts: Layouts, pages: list[str]) -> CompiledModel | None:
    """An entry's contributions laid out on ``layouts``' space for a campaign with
    ``pages`` (None: it does not fit)."""
    page_logits = _page_logits(entry, pages)
    if page_logits is None:
        return None
    contrib = np.zeros(layouts.space.n_slots, dtype=np.float64)
    for field, weights in entry.fields.items():
        slots = layouts.slots(field, weights.layout)
        if slots is None:
            return None
        contrib[slots] = np.frombuffer(weights.weights, dtype=np.float64)
    return CompiledModel(intercept=entry.intercept, contrib=contrib, pages=page_logits)


def _page_logits(entry: MemoEntry, pages: list[str]) -> np.ndarray | None:
    """Each page's number; None when a page the model knows was not probed."""
    if PAGE_INPUT not in entry.columns:
        return np.zeros(len(pages), dtype=np.float64)
    listed = set(entry.listed_pages)
    out = np.zeros(len(pages), dtype=np.float64)
    for i, page in enumerate(pages):
        if page in entry.pages:
            out[i] = entry.pages[page]
        elif page in listed:
            return None
    return out


def memo_entry(
    model: Any,
    columns: list[str],
    compiled: CompiledModel,
    layouts: Layouts,
    pages: list[str],
    *,
    categories: dict[str, set[str]] | None = None,
    imputer: bool | None = None,
) -> MemoEntry | None:
    """The memo form of a model compiled on ``layouts``' space for a campaign with
    ``pages``, or None when not reusable.

    categories: the model's :func:`categories_by_field` when already read;
    imputer: whether an imputer may rewrite values before its encoders (None: look).
    """
    if has_imputer(model) if imputer is None else imputer:
        return None
    listed_pages: list[str] = []
    if PAGE_INPUT in columns:
        known = page_categories(model)
        if known is None:
            return None
        listed_pages = sorted(known)
        unlisted = [i for i, page in enumerate(pages) if page not in known]
        if np.any(compiled.pages[unlisted] != 0.0):
            return None  # a page the model does not list moved its logit: not reusable
    space = layouts.space
    if categories is None:
        categories = categories_by_field(model)
    listed: dict[str, frozenset[Any]] = {f: frozenset(v) for f, v in categories.items()}
    listed.update({f: frozenset(space.vocabularies[f][1:]) for f in NUMERIC_FIELDS})
    covered = np.zeros(space.n_slots, dtype=bool)
    fields: dict[str, FieldWeights] = {}
    for field, values in listed.items():
        layout, slots = layouts.of_values(field, values)
        covered[slots] = True
        fields[field] = FieldWeights(layout, compiled.contrib[slots].tobytes())
    if np.any(compiled.contrib[~covered] != 0.0):
        return None  # a value the model does not list moved its logit: not reusable
    page_numbers = dict(zip(pages, compiled.pages.tolist(), strict=True)) if listed_pages else {}
    return MemoEntry(list(columns), compiled.intercept, fields, listed_pages, page_numbers)


def _environment_tag() -> str:
    """Memo format and the library versions a model's loading and probing depend on."""
    versions = f"{MEMO_FORMAT}|{sklearn.__version__}|{np.__version__}|{scipy.__version__}"
    return hashlib.sha256(versions.encode()).hexdigest()[:16]
