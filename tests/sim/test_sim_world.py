"""World: persistence, determinism, raw round-trip through extraction, oracle, eligibility."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from clickrouter.catalogue import load_catalog
from clickrouter.errors import InvalidInput
from clickrouter.features import FeatureSpace
from clickrouter.profile import extract_profile
from clickrouter.serving.targeting import Eligibility
from clickrouter.sim import World, WorldConfig
from clickrouter.sim.requests import rfc3339_local
from clickrouter.sim.truth import sigmoid


def test_raw_requests_extract_to_the_recorded_canonical_profile(world: World) -> None:
    pairs = world.sample_requests(np.random.default_rng(0), 30_000)
    mismatches = [(raw, canon) for raw, canon in pairs if extract_profile(raw) != canon]
    assert mismatches == []
    # every spelling the renderer knows actually occurs in the sample
    raws = [raw for raw, _ in pairs]
    assert any("user_agent" in r and "device" not in r for r in raws)
    assert any(isinstance(r["ts"], str) and r["ts"][-6] in "+-" for r in raws)
    assert any(isinstance(r["ts"], float) for r in raws)
    assert any(r["country"].isdigit() for r in raws)
    assert any(len(r["country"]) == 3 and r["country"].isalpha() for r in raws)
    assert any(len(r["country"]) > 3 and not r["country"].isdigit() for r in raws)
    assert any("tz" in r for r in raws) and any("provider" not in r for r in raws)
    assert any(r.get("provider", "x").startswith(" ") for r in raws)


def test_same_seed_same_world_and_traffic(tmp_path: Path) -> None:
    a = World.generate(n_campaigns=40, seed=3).save(tmp_path / "a")
    b = World.generate(n_campaigns=40, seed=3).save(tmp_path / "b")
    c = World.generate(n_campaigns=40, seed=4).save(tmp_path / "c")
    for name in ("campaigns.json", "world.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    first = World.load(a).sample_requests(np.random.default_rng(9), 500)
    again = World.load(b).sample_requests(np.random.default_rng(9), 500)
    assert first == again


def test_save_load_keeps_the_oracle(world: World, tmp_path: Path) -> None:
    loaded = World.load(world.save(tmp_path / "w"))
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(1), 200)]
    np.testing.assert_array_equal(loaded.true_proba(profiles), world.true_proba(profiles))
    np.testing.assert_array_equal(loaded.eligible(profiles), world.eligible(profiles))
    campaigns, problems = load_catalog(tmp_path / "w" / "campaigns.json")
    assert problems == [] and campaigns == world.campaigns


def test_load_rejects_a_missing_or_foreign_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"world\.json"):
        World.load(tmp_path)
    (tmp_path / "world.json").write_text('{"format": 1}')
    with pytest.raises(InvalidInput, match="not a world file"):
        World.load(tmp_path)


def test_catalogue_is_servable_with_targeting_and_placeholders(world: World) -> None:
    assert len(world.campaigns) == 300
    assert all("{click_id}" in c.landing_page for c in world.campaigns)
    assert all(c.payout > 0 for c in world.campaigns)
    assert 0.8 < np.mean([c.active for c in world.campaigns]) < 1.0
    targeted = [c for c in world.campaigns if "countries" in c.targeting]
    assert 0.2 < len(targeted) / len(world.campaigns) < 0.5
    assert any("os" in c.targeting for c in world.campaigns)


def test_eligibility_agrees_with_the_serving_tables(world: World) -> None:
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(2), 2000)]
    space = FeatureSpace.fit(profiles)
    serving = Eligibility(space, world.campaigns).many(space.indices_many(profiles))
    np.testing.assert_array_equal(world.eligible(profiles), serving)


def test_true_proba_is_the_sparse_logistic_model(world: World) -> None:
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(3), 50)]
    proba = world.true_proba(profiles)
    assert proba.shape == (50, 300)
    assert np.all((proba > 0) & (proba < 1))
    # recompute one campaign's probability from its effects by hand
    spec, c = world.truth.spec, 7
    vocab = world.audience.vocabulary.values
    for profile, p in zip(profiles, proba[:, c], strict=True):
        logit = spec.intercept[c]
        for k, campaign in enumerate(spec.effect_campaign):
            if campaign != c:
                continue
            field, value = spec.effect_field[k], spec.effect_value[k]
            actual = profile[field]
            index = actual if field.startswith("local_") else vocab[field].index(actual)
            logit += spec.effect_coef[k] if index == value else 0.0
        assert p == pytest.approx(float(sigmoid(np.array(logit))), rel=1e-9)


def test_unknown_values_get_no_effect(world: World) -> None:
    known = next(c for _, c in world.sample_requests(np.random.default_rng(4), 1))
    odd = known | {"device": "never-seen-phone", "provider": "nope"}
    slots = world.slots_of([odd])
    assert slots["device"][0] == 0 and slots["provider"][0] == 0
    assert world.true_proba([odd]).shape == (1, 300)


def test_base_rates_are_log_uniform_and_calibrated(world: World) -> None:
    base = np.array(world.truth.spec.base_rate)
    assert base.min() >= 1e-6 and base.max() <= 1e-3
    # log-uniform: each decade holds about a third of the campaigns
    decades = np.histogram(np.log10(base), bins=[-6, -5, -4, -3])[0] / len(base)
    assert np.all(np.abs(decades - 1 / 3) < 0.1)
    # mean true P(sale) over a campaign's eligible traffic (a whole week) is its base rate
    draw = world.draw_spread(np.random.default_rng(5), 20_000)
    slots = world.audience.slots(draw)
    proba, eligible = sigmoid(world.truth.logits(slots)), world.eligible_slots(slots)
    enough = eligible.sum(axis=0) > 2000
    mean = (proba * eligible).sum(axis=0)[enough] / eligible.sum(axis=0)[enough]
    ratio = mean / base[enough]
    assert enough.sum() > 150
    assert np.median(np.abs(np.log(ratio))) < 0.1


def test_config_errors_name_the_knob() -> None:
    with pytest.raises(InvalidInput, match="diurnal_curve"):
        WorldConfig(diurnal_curve=(1.0,) * 23).validated()
    with pytest.raises(InvalidInput, match="base_rate"):
        WorldConfig(base_rate_min=0.1, base_rate_max=0.01).validated()
    with pytest.raises(InvalidInput, match="n_campaigns"):
        World.generate(n_campaigns=0)


def test_rfc3339_rendering_matches_the_datetime_module() -> None:
    rng = np.random.default_rng(6)
    ts_ms = rng.integers(0, 4_000_000_000_000, 2000)
    offsets = rng.choice([-36000, -12600, 0, 3600, 19800, 20700, 46800], 2000)
    for text, ms, offset in zip(rfc3339_local(ts_ms, offsets), ts_ms, offsets, strict=True):
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone(timedelta(seconds=int(offset))))
        assert datetime.fromisoformat(text) == moment
        assert text.endswith("Z") == (offset == 0)
