"""Assemble loaded models into the bank's shared index space and scoring table.

Each campaign may have its own encoders with their own categories; the bank's
:class:`~clickrouter.features.FeatureSpace` is the union of them all (plus the
manifest's feature spec and every value named in targeting rules), so one
request maps to one slot per field for every campaign at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.features import FeatureSpace
from clickrouter.profile import CATEGORICAL_FIELDS
from clickrouter.serving.catalog import Campaign
from clickrouter.serving.compiler import CompiledModel, NotCompilable, Prober, categories_by_field
from clickrouter.serving.directory import LoadedDirectory
from clickrouter.serving.loading import model_columns

# the field whose rows carry each campaign's exp(-intercept) factor
_INTERCEPT_FIELD = "local_weekday"


@dataclass
class Assembly:
    """The parts of a bank: space, compiled table and which columns go where."""

    space: FeatureSpace
    campaigns: list[Campaign]
    table: np.ndarray  # (n_slots, n_compiled) exp(-contribution), C-contiguous
    compiled_cols: np.ndarray  # bank column of each table column
    generic_cols: np.ndarray  # bank column of each pooled model
    generic_paths: list[Path]
    skipped: list[str]
    generic_reasons: dict[str, str] = field(default_factory=dict)

    @property
    def all_compiled(self) -> bool:
        return len(self.generic_cols) == 0


def assemble(loaded: LoadedDirectory, *, compile: bool = True) -> Assembly:
    """Compile what compiles; route the rest to the generic path."""
    space = shared_space(loaded.models, loaded.campaigns, loaded.manifest)
    prober = Prober(space) if compile else None
    compiled: list[CompiledModel] = []
    compiled_cols: list[int] = []
    generic_cols: list[int] = []
    reasons: dict[str, str] = {}
    for j, (campaign, model) in enumerate(zip(loaded.campaigns, loaded.models, strict=True)):
        try:
            if prober is None:
                raise NotCompilable("compilation disabled")
            compiled.append(prober.compile(model, model_columns(model)))
            compiled_cols.append(j)
        except NotCompilable as exc:
            reasons[campaign.id] = str(exc)
            generic_cols.append(j)
    return Assembly(
        space=space,
        campaigns=loaded.campaigns,
        table=build_table(space, compiled),
        compiled_cols=np.asarray(compiled_cols, dtype=np.intp),
        generic_cols=np.asarray(generic_cols, dtype=np.intp),
        generic_paths=[loaded.model_paths[j] for j in generic_cols],
        skipped=loaded.problems,
        generic_reasons=reasons,
    )


def shared_space(
    models: list[Any], campaigns: list[Campaign], manifest: dict[str, Any]
) -> FeatureSpace:
    """One FeatureSpace covering every value any model or targeting rule distinguishes."""
    values: dict[str, set[str]] = {f: set() for f in CATEGORICAL_FIELDS}
    spec = manifest.get("feature_space")
    if isinstance(spec, dict):
        for f, vocab in FeatureSpace.from_dict(spec).vocabularies.items():
            if f in values:
                values[f].update(str(v) for v in vocab[1:])
    for model in models:
        for f, known in categories_by_field(model).items():
            values[f].update(known)
    for campaign in campaigns:
        for f, rule in campaign.rules().items():
            values[f].update((rule.allow or ()) + rule.deny)
    return FeatureSpace({f: sorted(v) for f, v in values.items()})


def build_table(space: FeatureSpace, compiled: list[CompiledModel]) -> np.ndarray:
    """exp(-contribution) per (slot, campaign), intercepts folded into one field's rows."""
    if not compiled:
        return np.ones((space.n_slots, 0), dtype=np.float64)
    contrib = np.vstack([m.contrib for m in compiled])  # (n_compiled, n_slots)
    table = np.ascontiguousarray(np.exp(-contrib.T))
    del contrib
    intercepts = np.exp(-np.array([m.intercept for m in compiled], dtype=np.float64))
    rows = space.field_slots(_INTERCEPT_FIELD)
    table[rows.start : rows.stop] *= intercepts[None, :]
    return table
