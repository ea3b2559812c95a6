"""Sample model directories: real fitted sklearn models for tests and benchmarks.

A few template pipelines are fitted on random profiles; each campaign gets a
deep copy of one template with its own random coefficients, so building
thousands of campaigns costs copies, not fits, while every file is an ordinary
fitted sklearn object (what a data scientist would hand over).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame

SAMPLE_VALUES: dict[str, list[str]] = {
    "country": ["FR", "DE", "ES", "IT", "GB", "US", "BR", "IN", "ID", "NG", "MX", "TR"],
    "device": [f"device-{i}" for i in range(60)],
    "os": ["android", "ios", "windows phone", "kaios"],
    "browser": ["chrome mobile", "mobile safari", "samsung internet", "opera mini", "firefox"],
    "provider": [f"carrier-{i}" for i in range(40)],
}


def random_profiles(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Canonical profiles drawn from :data:`SAMPLE_VALUES` (Zipf-like popularity)."""
    columns = {f: _zipf_choice(rng, values, n) for f, values in SAMPLE_VALUES.items()}
    columns["local_hour"] = rng.integers(0, 24, n).tolist()
    columns["local_weekday"] = rng.integers(0, 7, n).tolist()
    return [{f: columns[f][i] for f in columns} for i in range(n)]


def _zipf_choice(rng: np.random.Generator, values: list[str], n: int) -> list[str]:
    weights = 1.0 / np.arange(1, len(values) + 1)
    return [values[i] for i in rng.choice(len(values), n, p=weights / weights.sum())]


def template_models(rng: np.random.Generator) -> list[Pipeline]:
    """Fitted pipelines of the kinds the ModelBank compiles."""
    frame = profile_frame(random_profiles(rng, 2000))
    labels = rng.random(len(frame)) < 0.2
    cats, nums = list(CATEGORICAL_FIELDS), list(NUMERIC_FIELDS)
    templates = [
        make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), cats), (StandardScaler(), nums)
            ),
            LogisticRegression(max_iter=500),
        ),
        make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5), cats),
                (OneHotEncoder(handle_unknown="ignore"), nums),
            ),
            SGDClassifier(loss="log_loss", random_state=0),
        ),
    ]
    return [t.fit(frame, labels) for t in templates]


def campaign_model(template: Pipeline, rng: np.random.Generator, base_rate: float) -> Pipeline:
    """A copy of ``template`` with sparse random effects around ``base_rate``."""
    model = copy.deepcopy(template)
    final = model.steps[-1][1]
    coef = np.zeros_like(final.coef_)
    active = rng.random(coef.shape[1]) < 0.15
    coef[0, active] = rng.normal(0.0, 1.0, int(active.sum()))
    final.coef_ = coef
    final.intercept_ = np.array([np.log(base_rate / (1 - base_rate))])
    return model


def make_sample_directory(path: str | Path, n_campaigns: int, *, seed: int = 0) -> Path:
    """Write a model directory with ``n_campaigns`` fitted pipelines."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = template_models(rng)
    catalog = []
    for i in range(n_campaigns):
        cid = f"c{i:05d}"
        base_rate = float(10 ** rng.uniform(-6, -3))
        joblib.dump(
            campaign_model(templates[i % len(templates)], rng, base_rate), root / f"{cid}.joblib"
        )
        catalog.append(_catalog_entry(cid, rng))
    (root / "campaigns.json").write_text(json.dumps(catalog, indent=1), encoding="utf-8")
    return root


def _catalog_entry(cid: str, rng: np.random.Generator) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": cid,
        "landing_page": f"https://shop.example/{cid}?click={{click_id}}",
        "payout": round(float(rng.uniform(1, 50)), 2),
        "active": bool(rng.random() > 0.05),
    }
    if rng.random() < 0.2:
        entry["targeting"] = {"countries": {"allow": list(rng.choice(SAMPLE_VALUES["country"], 3))}}
    return entry
