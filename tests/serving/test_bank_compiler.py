"""The compiled ModelBank equals each campaign's own sklearn predict_proba to 1e-9.

Property tests: random pipelines (encoder options, scalers, passthrough, LR or
SGD) fitted on random data, several campaigns with different encoders in one
bank, scored on random profiles with unseen categories and missing fields.
With landing pages: campaigns with one to four pages (some the model never
saw), models that read the page id through their own encoder, through one
shared with profile fields, or not at all, and campaign and page targeting:
every offer column equals its model on a frame carrying that page id, and
eligibility follows the catalogue's rules; so it does when the models come
from the compile memo into a version whose catalogue changed the pages.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from clickrouter import ModelBank
from clickrouter.catalogue import PAGE_INPUT
from clickrouter.errors import NoEligibleCampaign
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


PAGE_IDS = ["default", "fr", "form", "lite", "v2"]
NEW_PAGE_IDS = ["added", "retargeted"]  # in catalogues, never in training data
COUNTRIES = ["FR", "DE", "US", "BR"]
OPERATING_SYSTEMS = ["ios", "android"]


page_encoders = encoders | st.builds(
    OrdinalEncoder, handle_unknown=st.just("use_encoded_value"), unknown_value=st.just(-1)
)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    """Targeting of a campaign or a page: none, countries, os or both."""
    targeting: dict[str, Any] = {}
    if draw(st.booleans()):
        countries = draw(st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3, unique=True))
        allow = draw(st.booleans())
        targeting["countries"] = {"allow": countries} if allow else {"deny": countries}
    if draw(st.integers(0, 3)) == 0:
        targeting["os"] = {"deny": [draw(st.sampled_from(OPERATING_SYSTEMS))]}
    return targeting


@st.composite
def paged_campaigns(draw: st.DrawFn) -> tuple[Any, list[str], dict[str, Any]]:
    """(unfitted model, page ids seen in training, catalogue entry without its id)."""
    model = draw(pipelines())
    mode = draw(st.sampled_from(["own", "shared", "none"]))
    trained = draw(st.lists(st.sampled_from(PAGE_IDS), min_size=1, max_size=4, unique=True))
    if isinstance(model, Pipeline) and mode != "none":
        parts = model.steps[0][1].transformers
        if mode == "own":
            parts.append(("page", draw(page_encoders), [PAGE_INPUT]))
        else:  # the page beside profile fields in one encoder
            parts[0] = (parts[0][0], parts[0][1], [*parts[0][2], PAGE_INPUT])
    listed = draw(
        st.lists(st.sampled_from(PAGE_IDS + NEW_PAGE_IDS), min_size=1, max_size=4, unique=True)
    )
    active = draw(st.lists(st.booleans(), min_size=len(listed), max_size=len(listed)))
    active[draw(st.integers(0, len(listed) - 1))] = True  # the catalogue needs one active page
    pages = [
        {
            "id": page,
            "url": f"https://shop.example/{page}?k={{click_id}}",
            "active": on,
            "targeting": draw(rules()),
        }
        for page, on in zip(listed, active, strict=True)
    ]
    entry = {
        "landing_pages": pages,
        "payout": draw(st.sampled_from([0.5, 1.0, 3.0])),
        "active": draw(st.integers(0, 5)) > 0,
        "targeting": draw(rules()),
    }
    return model, trained, entry


def _fit_paged(model: Any, trained: list[str], rng: np.random.Generator) -> Any:
    """:func:`_fit` on a frame that also carries a page id (the page moves the label)."""
    profiles = random_profiles(rng, int(rng.integers(60, 200)))
    frame = profile_frame(profiles)
    pages = rng.choice(trained, len(frame))
    frame[PAGE_INPUT] = pd.Series(pages, dtype=object)
    signal = (frame["country"] == "FR").to_numpy() | (pages == trained[0])
    labels = np.where(rng.random(len(frame)) < 0.8, signal, ~signal)
    if labels.all() or not labels.any():
        labels[0] = not labels[0]
    if isinstance(model, LogisticRegression):
        frame = frame[list(NUMERIC_FIELDS)]
    elif PAGE_INPUT not in _inputs(model):
        frame = frame.drop(columns=[PAGE_INPUT])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(frame, labels)


def _inputs(model: Pipeline) -> set[str]:
    return {c for _, _, cols in model.steps[0][1].transformers for c in cols}


def offer_proba(model: Any, canonical: list[dict[str, Any]], page: str) -> np.ndarray:
    """The reference: the model's own predict_proba on the profile frame carrying ``page``."""
    frame = profile_frame(canonical)
    frame[PAGE_INPUT] = pd.Series([page] * len(frame), dtype=object)
    columns = [str(c) for c in model.feature_names_in_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(model.predict_proba(frame[columns])[:, 1])


def _admits(targeting: dict[str, Any], profile: dict[str, Any]) -> bool:
    for key, field in (("countries", "country"), ("os", "os")):
        rule = targeting.get(key)
        if rule is None:
            continue
        if profile[field] in rule.get("deny", []):
            return False
        if "allow" in rule and profile[field] not in rule["allow"]:
            return False
    return True


def expected_eligibility(catalog: list[dict[str, Any]], profile: dict[str, Any]) -> list[bool]:
    """Per offer, in catalogue order: campaign and page active, both targetings admit."""
    return [
        bool(c.get("active", True) and p["active"])
        and _admits(c["targeting"], profile)
        and _admits(p["targeting"], profile)
        for c in catalog
        for p in c["landing_pages"]
    ]


@settings(max_examples=40)
@given(campaigns=st.lists(paged_campaigns(), min_size=1, max_size=4), seed=st.integers(0, 2**31))
def test_every_offer_matches_its_model_on_its_page_and_the_rules(
    tmp_path_factory: pytest.TempPathFactory,
    campaigns: list[tuple[Any, list[str], dict[str, Any]]],
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    try:
        fitted = {
            f"c{i}": _fit_paged(m, trained, rng) for i, (m, trained, _) in enumerate(campaigns)
        }
    except ValueError:  # an option combination sklearn itself refuses
        return
    catalog = [{"id": f"c{i}", **entry} for i, (_, _, entry) in enumerate(campaigns)]
    root = write_model_directory(tmp_path_factory.mktemp("bank"), fitted, catalog)
    with ModelBank.from_directory(root, workers=1) as bank:
        for reason in bank.assembly_.generic_reasons.values():
            assert reason.startswith("logit range"), reason
        offers = [(c["id"], p["id"]) for c in catalog for p in c["landing_pages"]]
        assert list(zip(bank.campaign_ids, bank.page_ids, strict=True)) == offers
        profiles = _test_profiles(rng)
        got = bank.predict_proba(profiles)
        canonical = bank.canonical(profiles)
        assert got.shape == (len(profiles), len(offers))
        for j, (cid, page) in enumerate(offers):
            expected = offer_proba(fitted[cid], canonical, page)
            np.testing.assert_allclose(got[:, j], expected, rtol=0, atol=TOLERANCE)
        eligible = bank.eligible(profiles)
        for i, profile in enumerate(canonical):
            assert eligible[i].tolist() == expected_eligibility(catalog, profile)
            _check_decision(bank, profile, got[i], eligible[i])


@settings(max_examples=20)
@given(campaigns=st.lists(paged_campaigns(), min_size=1, max_size=3), seed=st.integers(0, 2**31))
def test_a_memoised_model_scores_a_changed_page_list_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    campaigns: list[tuple[Any, list[str], dict[str, Any]]],
    seed: int,
) -> None:
    """The same model files in a version whose catalogue reversed each campaign's pages
    and added one: compiled from the compile memo, every offer still equals its model."""
    rng = np.random.default_rng(seed)
    try:
        fitted = {
            f"c{i}": _fit_paged(m, trained, rng) for i, (m, trained, _) in enumerate(campaigns)
        }
    except ValueError:
        return
    catalog = [{"id": f"c{i}", **entry} for i, (_, _, entry) in enumerate(campaigns)]
    cache = tmp_path_factory.mktemp("cache")
    first = write_model_directory(tmp_path_factory.mktemp("v1"), fitted, catalog)
    ModelBank.from_directory(first, workers=1, cache_dir=cache).close()
    for entry in catalog:
        added = {"id": "added", "url": "https://shop.example/added?k={click_id}"}
        pages = [p for p in entry["landing_pages"] if p["id"] != "added"]
        entry["landing_pages"] = [*reversed(pages), added]
    second = write_model_directory(tmp_path_factory.mktemp("v2"), fitted, catalog)
    with ModelBank.from_directory(second, workers=1, cache_dir=cache) as bank:
        compiled = {bank.campaign_ids[j] for j in bank.assembly_.compiled_cols}
        assert bank.assembly_.reused == len(compiled)  # every compiled model from the memo
        profiles = _test_profiles(rng)
        got = bank.predict_proba(profiles)
        canonical = bank.canonical(profiles)
        for j, (cid, page) in enumerate(zip(bank.campaign_ids, bank.page_ids, strict=True)):
            expected = offer_proba(fitted[cid], canonical, page)
            np.testing.assert_allclose(got[:, j], expected, rtol=0, atol=TOLERANCE)


def _check_decision(
    bank: ModelBank, profile: dict[str, Any], proba: np.ndarray, eligible: np.ndarray
) -> None:
    if not eligible.any():
        with pytest.raises(NoEligibleCampaign):
            bank.decide(profile)
        return
    decision = bank.decide(profile)
    column = bank.column_of(decision.campaign_id, decision.landing_page_id)
    assert eligible[column]
    value = np.where(eligible, proba * bank.payouts_, -np.inf)
    assert decision.expected_value == pytest.approx(value.max(), rel=1e-12)
    page = bank.campaign(decision.campaign_id).page(decision.landing_page_id)
    assert decision.landing_page == page.url
    assert msgspec.structs.asdict(decision.ranking[0])["landing_page_id"] == page.id
