"""Assemble loaded models into the bank's shared index space and scoring table.

Each campaign may have its own encoders with their own categories; the bank's
:class:`~clickrouter.features.FeatureSpace` is the union of them all (plus the
manifest's feature spec and every value named in campaign or page targeting
rules), so one request maps to one slot per field for every campaign at once.

The bank's columns are offers (:func:`~clickrouter.catalogue.offers_of`):
a campaign's pages in catalogue order, contiguous. One model per campaign
gives every one of its offer columns; they differ only in the page's number
(:attr:`CompiledModel.pages`), folded into the intercept rows, so the table
has one column per offer and the kernel needs no page at request time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.catalogue import PAGE_INPUT, Campaign, Offer, offers_of
from clickrouter.errors import ModelLoadError
from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS
from clickrouter.serving.compiler import (
    CompiledModel,
    NotCompilable,
    Prober,
    categories_by_field,
    page_categories,
)
from clickrouter.serving.directory import LoadedDirectory
from clickrouter.serving.loading import ModelFileError, load_model, model_columns
from clickrouter.serving.memo import CompileMemo, Layouts, MemoEntry, compiled_from, memo_entry
from clickrouter.serving.onehot import OneHotReader

# the field whose rows carry each campaign's exp(-intercept) factor
_INTERCEPT_FIELD = "local_weekday"


@dataclass
class Assembly:
    """The parts of a bank: space, compiled table and which offer columns go where."""

    space: FeatureSpace
    campaigns: list[Campaign]
    table: np.ndarray  # (n_slots, n_compiled offers) exp(-contribution), C-contiguous
    compiled_cols: np.ndarray  # bank (offer) column of each table column
    generic_cols: np.ndarray  # bank (offer) column of each pooled offer, model by model
    generic_paths: list[Path]  # the pooled models, one per campaign, in column order
    skipped: list[str]
    generic_reasons: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # models taken from the compile memo (not kept in the bank cache)

    @property
    def all_compiled(self) -> bool:
        return len(self.generic_cols) == 0

    @property
    def offers(self) -> list[Offer]:
        """The bank's columns: every page of every campaign."""
        return offers_of(self.campaigns)

    @property
    def generic_pages(self) -> list[tuple[str, ...]]:
        """The page ids of each pooled model's campaign (the pool scores one column each)."""
        offers = self.offers
        pages: list[tuple[str, ...]] = []
        previous = None
        for column in self.generic_cols.tolist():
            campaign, page = offers[column]
            if campaign is previous:
                pages[-1] += (page.id,)
            else:
                pages.append((page.id,))
            previous = campaign
        return pages


def assemble(
    loaded: LoadedDirectory, *, compile: bool = True, memo: CompileMemo | None = None
) -> Assembly:
    """Compile what compiles; route the rest to the generic path.

    Models standing as memo entries are laid out from them; every model
    compiled here is added to ``memo`` when its compiled form can be reused.
    """
    space, known = _space_of(loaded, memo)
    compiler = _Compiler(space, loaded, memo, known) if compile else None
    compiled: list[CompiledModel] = []
    compiled_cols: list[int] = []
    generic_cols: list[int] = []
    generic_models: list[int] = []
    reasons: dict[str, str] = {}
    first = 0  # the campaign's first offer column
    for j, campaign in enumerate(loaded.campaigns):
        columns = range(first, first + len(campaign.pages))
        first = columns.stop
        try:
            if compiler is None:
                raise NotCompilable("compilation disabled")
            compiled.append(compiler.compile(j))
            compiled_cols.extend(columns)
        except NotCompilable as exc:
            reasons[campaign.id] = str(exc)
            generic_cols.extend(columns)
            generic_models.append(j)
    return Assembly(
        space=space,
        campaigns=loaded.campaigns,
        table=build_table(space, compiled),
        compiled_cols=np.asarray(compiled_cols, dtype=np.intp),
        generic_cols=np.asarray(generic_cols, dtype=np.intp),
        generic_paths=[loaded.model_paths[j] for j in generic_models],
        skipped=loaded.problems,
        generic_reasons=reasons,
        reused=compiler.reused if compiler is not None else 0,
    )


class _Compiler:
    """Compiles column ``j`` of a loaded directory: from its memo entry when it has one,
    else by the one-hot reader when it recognises the model, else by the prober."""

    def __init__(
        self,
        space: FeatureSpace,
        loaded: LoadedDirectory,
        memo: CompileMemo | None,
        known: dict[int, dict[str, set[str]]],
    ):
        self.space = space
        self.loaded = loaded
        self.memo = memo
        self.known = known  # the categories of model j, where the space read them
        self.layouts = Layouts(space, memo) if memo is not None else None
        self.reused = 0
        self._reader = OneHotReader(space)
        # entries made by this assembly: identical files (campaigns still at the same
        # base rate) are compiled once and laid out from the entry like a memo hit
        self._made: dict[str, MemoEntry] = {}
        self._prober: Prober | None = None  # built only when a model must be probed

    def compile(self, j: int) -> CompiledModel:
        pages = [page.id for page in self.loaded.campaigns[j].pages]
        entry = self.loaded.memo_entries[j] if self.loaded.memo_entries else None
        if entry is not None and self.layouts is not None:
            compiled = compiled_from(entry, self.layouts, pages)
            if compiled is not None:
                self.reused += 1
                return compiled
        digest = self.loaded.digests[j] if self.loaded.digests else None
        made = self._made.get(digest) if digest is not None else None
        if made is not None and self.layouts is not None:
            compiled = compiled_from(made, self.layouts, pages)
            if compiled is not None:
                return compiled
        model = self.loaded.models[j]
        if model is None:  # an entry that does not fit this space: load the file after all
            model = self._load_again(j, digest)
        columns = model_columns(model)
        # the memo entry holds every page the model knows, so that a later
        # catalogue listing others of them still reuses it
        probed = pages if self.memo is None else pages + _other_known_pages(model, columns, pages)
        compiled = self._reader.compile(model, columns, probed)
        read = compiled is not None  # a one-hot pipeline: its encoders see raw values
        if compiled is None:
            compiled = self._probe(model, columns, probed)
        if self.memo is not None and self.layouts is not None and digest is not None:
            new_entry = memo_entry(
                model,
                columns,
                compiled,
                self.layouts,
                probed,
                categories=self.known.get(j),
                imputer=False if read else None,
            )
            if new_entry is not None:
                self.memo.put(digest, self.loaded.model_paths[j].suffix, new_entry)
                self._made[digest] = new_entry
        return dataclasses.replace(compiled, pages=compiled.pages[: len(pages)])

    def _probe(self, model: Any, columns: list[str], pages: list[str]) -> CompiledModel:
        """The prober's compile, for models the one-hot reader does not recognise."""
        if self._prober is None:
            self._prober = Prober(self.space)
        return self._prober.compile(model, columns, pages)

    def _load_again(self, j: int, digest: str | None) -> Any:
        """The model of a memo entry, from the very bytes that were judged and hashed."""
        path = self.loaded.model_paths[j]
        try:
            return load_model(path, sha256=digest)
        except ModelFileError as exc:
            raise ModelLoadError(str(exc)) from None


def _other_known_pages(model: Any, columns: list[str], pages: list[str]) -> list[str]:
    """The page ids a model reading the page knows beyond ``pages``, sorted."""
    if PAGE_INPUT not in columns:
        return []
    return sorted((page_categories(model) or set()) - set(pages))


def _space_of(
    loaded: LoadedDirectory, memo: CompileMemo | None
) -> tuple[FeatureSpace, dict[int, dict[str, set[str]]]]:
    """The shared space, and the categories of each model read from the model itself;
    a memo entry's categories are read once per distinct layout."""
    categories: list[dict[str, set[str]]] = []
    known: dict[int, dict[str, set[str]]] = {}
    by_model: dict[int, dict[str, set[str]]] = {}  # identical files share one model object
    seen_layouts: set[tuple[str, ...]] = set()
    entries = loaded.memo_entries or [None] * len(loaded.models)
    for j, (model, entry) in enumerate(zip(loaded.models, entries, strict=True)):
        if entry is None or memo is None:
            if id(model) not in by_model:
                by_model[id(model)] = categories_by_field(model)
                categories.append(by_model[id(model)])
            known[j] = by_model[id(model)]
            continue
        layouts = tuple(w.layout for w in entry.fields.values())
        if layouts not in seen_layouts:
            seen_layouts.add(layouts)
            categories.append(memo.categories(entry))
    space = space_from_categories(categories, loaded.campaigns, loaded.feature_space)
    return space, known


def shared_space(
    models: list[Any], campaigns: list[Campaign], spec: dict[str, Any] | None
) -> FeatureSpace:
    """One FeatureSpace covering every value any model, targeting rule or ``spec`` (the
    manifest's feature space) distinguishes."""
    return space_from_categories([categories_by_field(m) for m in models], campaigns, spec)


def space_from_categories(
    categories: list[dict[str, set[str]]], campaigns: list[Campaign], spec: dict[str, Any] | None
) -> FeatureSpace:
    """:func:`shared_space` from each model's categories per field."""
    values: dict[str, set[str]] = {f: set() for f in CATEGORICAL_FIELDS}
    if spec is not None:
        for f, vocab in FeatureSpace.from_dict(spec).vocabularies.items():
            if f in values:
                values[f].update(str(v) for v in vocab[1:])
    for known_by_field in categories:
        for f, known in known_by_field.items():
            values[f].update(known)
    for campaign in campaigns:
        for rules in (campaign.rules(), *(page.rules() for page in campaign.pages)):
            for f, rule in rules.items():
                values[f].update((rule.allow or ()) + rule.deny)
    return FeatureSpace({f: sorted(v) for f, v in values.items()})


def build_table(space: FeatureSpace, compiled: list[CompiledModel]) -> np.ndarray:
    """exp(-contribution) per (slot, offer): each model's column repeated once per page,
    its intercept plus the page's number folded into one field's rows."""
    if not compiled:
        return np.ones((space.n_slots, 0), dtype=np.float64)
    contrib = np.vstack([m.contrib for m in compiled])  # (n_models, n_slots)
    factors = np.exp(-contrib.T)  # (n_slots, n_models): one exp per model, not per offer
    del contrib
    model_of = np.repeat(np.arange(len(compiled)), [len(m.pages) for m in compiled])
    table = np.ascontiguousarray(factors[:, model_of])
    del factors
    intercepts = np.exp(-np.concatenate([m.intercept + m.pages for m in compiled]))
    rows = space.field_slots(_INTERCEPT_FIELD)
    table[rows.start : rows.stop] *= intercepts[None, :]
    return table
