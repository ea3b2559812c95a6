"""The compiled ModelBank equals each campaign's own sklearn predict_proba to 1e-9.

Property tests: random pipelines (encoder options, scalers, passthrough, LR or
SGD) fitted on random data, several campaigns with different encoders in one
bank, scored on random profiles with unseen categories and missing fields.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from clickrouter import ModelBank
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame
from fakes import POOLS, random_profiles, sklearn_proba, write_model_directory

TOLERANCE = 1e-9

encoders = st.builds(
    OneHotEncoder,
    handle_unknown=st.sampled_from(["ignore", "infrequent_if_exist"]),
    min_frequency=st.sampled_from([None, 2, 5, 0.1]),
    max_categories=st.sampled_from([None, 2, 3]),
    drop=st.sampled_from([None, "first", "if_binary"]),
)
numeric_steps = st.sampled_from(["passthrough", "scaler", "minmax", "onehot"])
finals = st.sampled_from(["lr", "lr-strong", "sgd"])


@st.composite
def pipelines(draw: st.DrawFn) -> Pipeline | LogisticRegression:
    if draw(st.integers(0, 9)) == 0:  # a bare linear model on numeric columns
        return LogisticRegression(C=draw(st.floats(0.01, 100)))
    cats = draw(st.lists(st.sampled_from(CATEGORICAL_FIELDS), min_size=1, max_size=5, unique=True))
    nums = draw(st.lists(st.sampled_from(NUMERIC_FIELDS), max_size=2, unique=True))
    parts: list[tuple[str, Any, list[str]]] = []
    split = draw(st.booleans())  # one encoder for all columns, or one per column
    groups = [[c] for c in cats] if split else [cats]
    for i, group in enumerate(groups):
        parts.append((f"cat{i}", draw(encoders), group))
    if nums:
        parts.append(("num", _numeric(draw(numeric_steps)), nums))
    final = {
        "lr": LogisticRegression(max_iter=300),
        "lr-strong": LogisticRegression(C=0.05),
        "sgd": SGDClassifier(loss="log_loss", random_state=0, max_iter=50, tol=None),
    }[draw(finals)]
    return Pipeline([("pre", ColumnTransformer(parts)), ("clf", final)])


def _numeric(kind: str) -> Any:
    return {
        "passthrough": "passthrough",
        "scaler": StandardScaler(),
        "minmax": MinMaxScaler(),
        "onehot": OneHotEncoder(handle_unknown="ignore"),
    }[kind]


def _fit(model: Any, rng: np.random.Generator) -> Any:
    profiles = random_profiles(rng, int(rng.integers(40, 200)))
    frame = profile_frame(profiles)
    signal = (frame["country"] == "FR").to_numpy() | (frame["local_hour"] < 6).to_numpy()
    labels = np.where(rng.random(len(frame)) < 0.8, signal, ~signal)
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    if isinstance(model, LogisticRegression):
        frame = frame[list(NUMERIC_FIELDS)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny random data
        return model.fit(frame, labels)


def _test_profiles(rng: np.random.Generator) -> list[dict[str, Any]]:
    profiles: list[dict[str, Any]] = random_profiles(rng, 30)
    for profile in profiles[:10]:  # unseen values in every field
        field = CATEGORICAL_FIELDS[int(rng.integers(len(CATEGORICAL_FIELDS)))]
        profile[field] = f"never-seen-{rng.integers(1000)}"
    for profile in profiles[10:15]:  # missing fields -> unknown
        del profile[CATEGORICAL_FIELDS[int(rng.integers(len(CATEGORICAL_FIELDS)))]]
    return profiles


@settings(max_examples=40)
@given(models=st.lists(pipelines(), min_size=1, max_size=4), seed=st.integers(0, 2**31))
def test_bank_matches_sklearn_for_random_pipelines(
    tmp_path_factory: pytest.TempPathFactory, models: list[Any], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    try:
        fitted = {f"c{i}": _fit(m, rng) for i, m in enumerate(models)}
    except ValueError:  # an option combination sklearn itself refuses
        return
    root = write_model_directory(tmp_path_factory.mktemp("bank"), fitted)
    with ModelBank.from_directory(root, workers=1) as bank:
        # every model compiles, except a diverged fit whose logits could
        # overflow the product form: that one is served (exactly) by the pool
        for reason in bank.assembly_.generic_reasons.values():
            assert reason.startswith("logit range"), reason
        profiles = _test_profiles(rng)
        got = bank.predict_proba(profiles)
        canonical = bank.canonical(profiles)
        for j, cid in enumerate(bank.campaign_ids):
            expected = sklearn_proba(fitted[cid], canonical)
            np.testing.assert_allclose(got[:, j], expected, rtol=0, atol=TOLERANCE)


def test_extreme_logits_stay_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["country"])]),
                ),
                ("clf", LogisticRegression()),
            ]
        ),
        rng,
    )
    model[-1].coef_ = model[-1].coef_ * 40  # probabilities down to ~1e-30
    model[-1].intercept_ = np.array([-25.0])
    bank = ModelBank.from_directory(write_model_directory(tmp_path, {"c": model}))
    profiles = [
        {**p, "country": c} for p, c in zip(random_profiles(rng, 6), POOLS["country"], strict=True)
    ]
    got = bank.predict_proba(profiles)[:, 0]
    expected = sklearn_proba(model, bank.canonical(profiles))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)


def test_predict_proba_accepts_raw_profiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    model = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer(
                        [("c", OneHotEncoder(handle_unknown="ignore"), ["country", "os"])]
                    ),
                ),
                ("clf", LogisticRegression()),
            ]
        ),
        rng,
    )
    bank = ModelBank.from_directory(write_model_directory(tmp_path, {"c": model}))
    raw = {"country": "BRA", "os": "Android", "ts": "2026-11-26T12:00:00Z"}
    canonical = {"country": "BR", "os": "android", "local_hour": 9, "local_weekday": 3}
    assert bank.predict_proba([raw])[0, 0] == pytest.approx(
        bank.predict_proba([canonical])[0, 0], abs=1e-15
    )
