"""Decisions: expected value ranking, activity and targeting masks, the generic pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from clickrouter import ModelBank
from clickrouter.errors import ModelLoadError, NoEligibleCampaign
from clickrouter.profile import profile_frame
from fakes import fitted_pipeline, random_profiles, sklearn_proba, write_model_directory


def catalog_entry(cid: str, payout: float = 1.0, **extra: object) -> dict[str, object]:
    return {
        "id": cid,
        "landing_page": f"https://shop.example/{cid}?k={{click_id}}",
        "payout": payout,
        **extra,
    }


def test_decision_maximises_expected_value_among_eligible(tmp_path: Path) -> None:
    models = {c: fitted_pipeline(i) for i, c in enumerate(["fr_only", "no_ios", "off", "any"])}
    catalog = [
        catalog_entry("fr_only", 5.0, targeting={"countries": {"allow": ["FRA"]}}),
        catalog_entry("no_ios", 3.0, targeting={"os": {"deny": ["iOS"]}}),
        catalog_entry("off", 100.0, active=False),
        catalog_entry("any", 1.0),
    ]
    bank = ModelBank.from_directory(write_model_directory(tmp_path, models, catalog))
    profiles = random_profiles(np.random.default_rng(3), 40)
    eligible = bank.eligible(profiles)
    proba = bank.predict_proba(profiles)
    canonical = bank.canonical(profiles)
    for i, profile in enumerate(canonical):
        expected_mask = np.array([profile["country"] == "FR", profile["os"] != "ios", False, True])
        assert np.array_equal(eligible[i], expected_mask)
        decision = bank.decide(profile, top=4)
        value = np.where(expected_mask, proba[i] * [5.0, 3.0, 100.0, 1.0], -np.inf)
        assert decision.campaign_id == bank.campaign_ids[int(np.argmax(value))]
        assert decision.expected_value == pytest.approx(value.max())
        assert [r.campaign_id for r in decision.ranking] == [
            bank.campaign_ids[j] for j in np.argsort(-value)[: expected_mask.sum()]
        ]
        landing_page = bank.campaign(decision.campaign_id).landing_page_for("K1")
        assert landing_page == decision.landing_page.replace("{click_id}", "K1")


def test_no_eligible_campaign_is_a_clear_error(tmp_path: Path) -> None:
    catalog = [catalog_entry("a", targeting={"countries": ["DE"]})]
    bank = ModelBank.from_directory(
        write_model_directory(tmp_path, {"a": fitted_pipeline()}, catalog)
    )
    with pytest.raises(NoEligibleCampaign):
        bank.decide({"country": "FR"})


def test_uncompilable_models_are_scored_exactly_by_the_worker_pool(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    frame = profile_frame(random_profiles(rng, 200))
    labels = (frame["local_hour"] < 8).to_numpy() ^ (rng.random(200) < 0.2)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(
        frame[["local_hour", "local_weekday"]], labels
    )
    models = {"lin": fitted_pipeline(0), "rf1": forest, "rf2": forest, "lin2": fitted_pipeline(1)}
    with ModelBank.from_directory(write_model_directory(tmp_path, models), workers=2) as bank:
        assert (bank.n_compiled, bank.n_generic) == (2, 2)
        assert "not a supported linear classifier" in bank.assembly_.generic_reasons["rf1"]
        assert bank.pool_ is not None and len(bank.pool_.shards_) == 2
        profiles = random_profiles(rng, 25)
        got = bank.predict_proba(profiles)
        canonical = bank.canonical(profiles)
        for j, cid in enumerate(bank.campaign_ids):
            np.testing.assert_allclose(got[:, j], sklearn_proba(models[cid], canonical), atol=1e-12)
        assert bank.decide(profiles[0]).campaign_id in models


def test_compile_false_routes_everything_to_the_pool_with_equal_results(tmp_path: Path) -> None:
    root = write_model_directory(tmp_path, {"a": fitted_pipeline(0), "b": fitted_pipeline(1)})
    profiles = random_profiles(np.random.default_rng(5), 10)
    compiled = ModelBank.from_directory(root).predict_proba(profiles)
    with ModelBank.from_directory(root, compile=False, workers=1) as pooled:
        assert pooled.n_compiled == 0
        np.testing.assert_allclose(pooled.predict_proba(profiles), compiled, atol=1e-12)


def test_cache_dir_memory_maps_the_same_bank(tmp_path: Path) -> None:
    root = write_model_directory(tmp_path / "m", {"a": fitted_pipeline(0), "b": fitted_pipeline(1)})
    first = ModelBank.from_directory(root, cache_dir=tmp_path / "cache")
    second = ModelBank.from_directory(root, cache_dir=tmp_path / "cache")
    assert isinstance(second.assembly_.table, np.memmap)
    profiles = random_profiles(np.random.default_rng(6), 10)
    assert np.array_equal(first.predict_proba(profiles), second.predict_proba(profiles))
    (root / "b.joblib").write_bytes(b"changed")  # content change -> new key -> reload fails loudly
    with pytest.raises(ModelLoadError, match=r"b\.joblib"):
        ModelBank.from_directory(root, cache_dir=tmp_path / "cache")


def test_copies_of_a_directory_keep_their_own_version_in_the_cache(tmp_path: Path) -> None:
    models = {"a": fitted_pipeline(0)}
    first = write_model_directory(tmp_path / "v1", models)
    second = write_model_directory(tmp_path / "v2", models)
    cache = tmp_path / "cache"
    assert ModelBank.from_directory(first, cache_dir=cache).version == "v1"
    assert ModelBank.from_directory(second, cache_dir=cache).version == "v2"


def test_predict_proba_slots_skips_extraction_with_equal_results(tmp_path: Path) -> None:
    bank = ModelBank.from_directory(write_model_directory(tmp_path, {"a": fitted_pipeline(0)}))
    canonical = bank.canonical(random_profiles(np.random.default_rng(8), 12))
    slots = bank.space.indices_many(canonical)
    np.testing.assert_array_equal(
        bank.predict_proba_slots(canonical, slots), bank.predict_proba(canonical)
    )
