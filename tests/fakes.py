"""Shared test helpers: real fitted sklearn models written into real model directories."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.profile import CANONICAL_FIELDS, profile_frame

POOLS: dict[str, list[str]] = {
    "country": ["FR", "DE", "US", "BR", "IN", "unknown"],
    "device": ["iphone", "galaxy s21", "pixel 7", "redmi 9", "unknown"],
    "os": ["ios", "android", "unknown"],
    "browser": ["chrome mobile", "mobile safari", "opera mini"],
    "provider": ["orange", "sfr", "vodafone", "jio", "unknown"],
}


def random_profiles(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Canonical profiles drawn from POOLS (skewed, so some values are rare)."""
    out = []
    for _ in range(n):
        profile: dict[str, Any] = {}
        for field, pool in POOLS.items():
            weights = 1.0 / np.arange(1, len(pool) + 1) ** 1.5
            profile[field] = pool[rng.choice(len(pool), p=weights / weights.sum())]
        profile["local_hour"] = int(rng.integers(24))
        profile["local_weekday"] = int(rng.integers(7))
        out.append(profile)
    return out


def fitted_pipeline(seed: int = 0, columns: tuple[str, ...] = ("country", "os")) -> Any:
    """A small fitted OneHotEncoder + LogisticRegression pipeline (compilable)."""
    rng = np.random.default_rng(seed)
    frame = profile_frame(random_profiles(rng, 120))
    labels = rng.random(len(frame)) < 0.3
    pre = ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), list(columns))])
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, labels)


def write_model_directory(
    root: Path, models: dict[str, Any], campaigns: list[dict[str, Any]] | None = None
) -> Path:
    """Dump ``models`` as <id>.joblib and a campaigns.json (default entries)."""
    root.mkdir(parents=True, exist_ok=True)
    for cid, model in models.items():
        joblib.dump(model, root / f"{cid}.joblib")
    if campaigns is None:
        campaigns = [
            {"id": cid, "landing_page": f"https://shop.example/{cid}?k={{click_id}}", "payout": 1.0}
            for cid in models
        ]
    (root / "campaigns.json").write_text(json.dumps(campaigns), encoding="utf-8")
    return root


def sklearn_proba(model: Any, canonical: list[dict[str, Any]]) -> np.ndarray:
    """The reference: the model's own predict_proba(...)[:, 1] on the profile frame."""
    frame = profile_frame(canonical)
    columns = [str(c) for c in model.feature_names_in_]
    assert set(columns) <= set(CANONICAL_FIELDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unseen categories are the point
        return np.asarray(model.predict_proba(frame[columns])[:, 1])
