"""Offers as the bank's columns: pages chosen, pages excluded, caches that follow the pages.

Real fitted pipelines reading the ``landing_page`` input, in real model
directories, through the real cache and compile memo, and the generic worker
pool for a model that does not compile.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from clickrouter import ModelBank
from clickrouter.catalogue import PAGE_INPUT
from clickrouter.errors import InvalidInput
from clickrouter.profile import profile_frame
from fakes import fitted_pipeline, random_profiles, write_model_directory

PAGE_EFFECT = {"fr": 2.0, "form": -1.0, "lite": 0.0}


def paged_model(seed: int = 0, pages: tuple[str, ...] = ("fr", "form", "lite")) -> Any:
    """A compilable pipeline whose page moves P(sale) a lot (country and page one-hot)."""
    rng = np.random.default_rng(seed)
    frame = profile_frame(random_profiles(rng, 400))
    page = rng.choice(list(pages), len(frame))
    frame[PAGE_INPUT] = pd.Series(page, dtype=object)
    logit = -1.0 + np.array([PAGE_EFFECT.get(p, 0.0) for p in page])
    labels = rng.random(len(frame)) < 1 / (1 + np.exp(-logit))
    pre = ColumnTransformer(
        [
            ("c", OneHotEncoder(handle_unknown="ignore"), ["country", "os"]),
            ("p", OneHotEncoder(handle_unknown="ignore"), [PAGE_INPUT]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, labels)


def page(page_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": page_id, "url": f"https://shop.example/{page_id}?k={{click_id}}", **extra}


def entry(cid: str, pages: list[dict[str, Any]], payout: float = 1.0, **extra: Any) -> Any:
    return {"id": cid, "landing_pages": pages, "payout": payout, **extra}


def offer_proba(model: Any, canonical: list[dict[str, Any]], page_id: str) -> np.ndarray:
    frame = profile_frame(canonical)
    frame[PAGE_INPUT] = pd.Series([page_id] * len(frame), dtype=object)
    columns = [str(c) for c in model.feature_names_in_]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(model.predict_proba(frame[columns])[:, 1])


def assert_offers_match(bank: ModelBank, models: dict[str, Any], profiles: list[Any]) -> None:
    got = bank.predict_proba(profiles)
    canonical = bank.canonical(profiles)
    for j, (cid, page_id) in enumerate(zip(bank.campaign_ids, bank.page_ids, strict=True)):
        expected = offer_proba(models[cid], canonical, page_id)
        np.testing.assert_allclose(got[:, j], expected, rtol=0, atol=1e-9)


def test_columns_are_offers_and_decide_names_the_best_page(tmp_path: Path) -> None:
    models = {"a": paged_model(0), "b": fitted_pipeline(1)}
    catalog = [
        entry("a", [page("lite"), page("fr"), page("form")]),
        {"id": "b", "landing_page": "https://b.example/?k={click_id}", "payout": 1.0},
    ]
    bank = ModelBank.from_directory(write_model_directory(tmp_path, models, catalog))
    assert bank.campaign_ids == ["a", "a", "a", "b"]
    assert bank.page_ids == ["lite", "fr", "form", "default"]
    assert [c.id for c in bank.campaigns] == ["a", "b"]
    assert bank.offer_campaign_.tolist() == [0, 0, 0, 1]
    assert (bank.column_of("a"), bank.column_of("a", "form"), bank.column_of("b")) == (0, 2, 3)
    assert [(o.campaign.id, o.page.id) for o in bank.offers] == list(
        zip(bank.campaign_ids, bank.page_ids, strict=True)
    )
    profiles = random_profiles(np.random.default_rng(1), 30)
    assert_offers_match(bank, models, profiles)
    proba = bank.predict_proba(profiles)
    # the page moves the probability: "fr" beats "lite" beats "form" for every profile
    assert np.all(proba[:, 1] > proba[:, 0]) and np.all(proba[:, 0] > proba[:, 2])
    for i, profile in enumerate(profiles):
        decision = bank.decide(profile, top=4)
        best = int(np.argmax(proba[i]))
        assert (decision.campaign_id, decision.landing_page_id) == (
            bank.campaign_ids[best],
            bank.page_ids[best],
        )
        assert [(r.campaign_id, r.landing_page_id) for r in decision.ranking] == [
            (bank.campaign_ids[j], bank.page_ids[j]) for j in np.argsort(-proba[i])
        ]
        url = bank.campaign(decision.campaign_id).landing_page_for("K1", decision.landing_page_id)
        assert url == decision.landing_page.replace("{click_id}", "K1")


def test_unknown_offers_are_404(tmp_path: Path) -> None:
    catalog = [entry("a", [page("fr"), page("form")])]
    bank = ModelBank.from_directory(write_model_directory(tmp_path, {"a": paged_model()}, catalog))
    hostile: list[Any] = [["a"], {"a": 1}, 3, None]  # what a JSON body may carry instead
    for args in (("zz",), ("a", "nope"), ("zz", "fr"), *((h,) for h in hostile), ("a", ["fr"])):
        with pytest.raises(InvalidInput) as err:
            bank.column_of(*args)
        assert err.value.status == 404
    for cid in ("zz", ["a"]):
        with pytest.raises(InvalidInput):
            bank.campaign(cid)  # type: ignore[arg-type]
    assert bank.campaign("a").id == "a" and bank.column_of("a", "form") == 1


def test_inactive_and_targeted_pages_are_never_chosen(tmp_path: Path) -> None:
    # "fr" is by far the best page, but it is off; "form" only shows in Germany
    catalog = [
        entry(
            "a",
            [
                page("fr", active=False),
                page("form", targeting={"countries": ["DE"]}),
                page("lite", targeting={"os": {"deny": ["ios"]}}),
            ],
        ),
        entry("b", [page("default")], payout=0.01),
    ]
    models = {"a": paged_model(), "b": fitted_pipeline(3)}
    bank = ModelBank.from_directory(write_model_directory(tmp_path, models, catalog))
    profiles = bank.canonical(random_profiles(np.random.default_rng(2), 200))
    eligible = bank.eligible(profiles)
    for i, profile in enumerate(profiles):
        assert not eligible[i, 0]
        assert eligible[i, 1] == (profile["country"] == "DE")
        assert eligible[i, 2] == (profile["os"] != "ios")
        decision = bank.decide(profile, top=4)
        assert decision.landing_page_id != "fr"
        if decision.landing_page_id == "form":
            assert profile["country"] == "DE"
        if decision.landing_page_id == "lite":
            assert profile["os"] != "ios"
        assert all(r.landing_page_id != "fr" for r in decision.ranking)
    chosen = {bank.decide(p).landing_page_id for p in profiles}
    assert {"form", "lite"} <= chosen


def test_a_model_without_the_page_scores_its_pages_alike(tmp_path: Path) -> None:
    catalog = [entry("a", [page("fr"), page("form", targeting={"countries": ["FR"]})])]
    bank = ModelBank.from_directory(
        write_model_directory(tmp_path, {"a": fitted_pipeline(0)}, catalog)
    )
    proba = bank.predict_proba(random_profiles(np.random.default_rng(3), 20))
    assert np.array_equal(proba[:, 0], proba[:, 1])


def test_the_bank_cache_follows_the_catalogue_pages(tmp_path: Path) -> None:
    """Same model file, pages changed: the cached table is never the old page set's."""
    models = {"a": paged_model(), "b": fitted_pipeline(1)}
    root = tmp_path / "models"
    cache = tmp_path / "cache"
    profiles = random_profiles(np.random.default_rng(4), 20)
    catalog = [entry("a", [page("fr"), page("form")]), entry("b", [page("default")])]
    write_model_directory(root, models, catalog)
    first = ModelBank.from_directory(root, cache_dir=cache)
    assert first.page_ids == ["fr", "form", "default"]
    again = ModelBank.from_directory(root, cache_dir=cache)
    assert isinstance(again.assembly_.table, np.memmap)
    np.testing.assert_array_equal(again.predict_proba(profiles), first.predict_proba(profiles))
    # pages reordered, one retired, one the model never saw added
    catalog[0]["landing_pages"] = [
        page("lite"),
        page("form"),
        page("new"),
        page("fr", active=False),
    ]
    (root / "campaigns.json").write_text(json.dumps(catalog))
    changed = ModelBank.from_directory(root, cache_dir=cache)
    assert changed.page_ids == ["lite", "form", "new", "fr", "default"]
    assert_offers_match(changed, models, profiles)
    assert not changed.eligible(profiles)[:, 3].any()
    cached = ModelBank.from_directory(root, cache_dir=cache)
    assert isinstance(cached.assembly_.table, np.memmap)
    assert cached.page_ids == changed.page_ids
    np.testing.assert_array_equal(cached.predict_proba(profiles), changed.predict_proba(profiles))


def test_the_compile_memo_reuses_a_file_whatever_pages_the_catalogue_lists(
    tmp_path: Path,
) -> None:
    """A model file carried over to versions whose catalogue changed its pages."""
    model = paged_model(5, pages=("fr", "form", "lite"))
    cache = tmp_path / "cache"
    profiles = random_profiles(np.random.default_rng(5), 20)
    v1 = write_model_directory(tmp_path / "v1", {"a": model}, [entry("a", [page("fr")])])
    ModelBank.from_directory(v1, cache_dir=cache)
    catalogues = [
        [page("fr"), page("other")],  # a page the model never saw
        [page("lite"), page("fr"), page("form")],  # pages it knows, v1 did not list
    ]
    for i, pages in enumerate(catalogues):
        root = write_model_directory(tmp_path / f"v{i + 2}", {"a": model}, [entry("a", pages)])
        bank = ModelBank.from_directory(root, cache_dir=cache)
        assert bank.assembly_.reused == 1
        assert_offers_match(bank, {"a": model}, profiles)
    # and an entry whose page numbers were tampered with is refused by its MAC, not served
    (memo_file,) = (cache / next(p.name for p in cache.glob("memo-*"))).glob("*.memo")
    data = bytearray(memo_file.read_bytes())
    data[len(data) // 2] ^= 1
    memo_file.write_bytes(bytes(data))
    root = write_model_directory(tmp_path / "v9", {"a": model}, [entry("a", [page("form")])])
    bank = ModelBank.from_directory(root, cache_dir=cache)
    assert bank.assembly_.reused == 0
    assert_offers_match(bank, {"a": model}, profiles)


def test_the_worker_pool_scores_each_offer_with_its_page(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    frame = profile_frame(random_profiles(rng, 300))
    pages = rng.choice(["fr", "form"], len(frame))
    frame[PAGE_INPUT] = pd.Series(pages, dtype=object)
    labels = (pages == "fr") ^ (rng.random(len(frame)) < 0.2)
    forest = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        (
                            "p",
                            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            [PAGE_INPUT, "country"],
                        )
                    ]
                ),
            ),
            ("rf", RandomForestClassifier(n_estimators=10, random_state=0)),
        ]
    ).fit(frame[[PAGE_INPUT, "country"]], labels)
    models = {"rf": forest, "lin": paged_model(1), "plain": fitted_pipeline(2)}
    catalog = [
        entry("rf", [page("form"), page("fr")]),
        entry("lin", [page("fr"), page("lite")]),
        entry("plain", [page("x"), page("y"), page("z")]),
    ]
    root = write_model_directory(tmp_path, models, catalog)
    profiles = random_profiles(rng, 15)
    with ModelBank.from_directory(root, workers=2) as bank:
        assert (bank.n_compiled, bank.n_generic) == (5, 2)
        assert_offers_match(bank, models, profiles)
    with ModelBank.from_directory(root, compile=False, workers=2) as pooled:
        assert pooled.n_generic == 7
        assert_offers_match(pooled, models, profiles)


def test_a_page_unseen_by_an_error_encoder_scores_as_ignored(tmp_path: Path) -> None:
    """sklearn would raise on the unseen page; the bank serves it as the all-zero row."""
    model = paged_model(7)
    encoders = [e for _, e, _ in model.steps[0][1].transformers_ if isinstance(e, OneHotEncoder)]
    for encoder in encoders:
        encoder.handle_unknown = "error"
    catalog = [entry("a", [page("fr"), page("brand-new")])]
    bank = ModelBank.from_directory(write_model_directory(tmp_path, {"a": model}, catalog))
    assert bank.n_compiled == 2
    profiles = random_profiles(np.random.default_rng(8), 10)
    canonical = bank.canonical(profiles)
    with pytest.raises(ValueError):
        offer_proba(model, canonical, "brand-new")
    for encoder in encoders:
        encoder.handle_unknown = "ignore"
    assert_offers_match(bank, {"a": model}, profiles)
