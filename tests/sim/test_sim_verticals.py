"""Verticals: campaigns of one vertical share profile effects by ``shared_structure``."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from clickrouter.catalogue import load_catalog
from clickrouter.cli import main
from clickrouter.demo.config import DemoConfig
from clickrouter.demo.stages import world_config
from clickrouter.errors import InvalidInput
from clickrouter.sim import World, WorldConfig
from clickrouter.sim.campaigns import VERTICALS, vertical_groups
from clickrouter.sim.truth import Truth

DEMO_PAGED = WorldConfig(base_rate_min=1e-3, base_rate_max=3e-2, max_pages=5)


def fingerprint(world: World) -> str:
    """Digest of the truth, pages, audience, campaigns (vertical aside) and a traffic draw."""
    spec, digest = world.truth.spec, hashlib.sha256()
    own = ("base_rate", "intercept", "effect_campaign", "effect_field", "effect_value")
    for name in (*own, "effect_coef"):
        digest.update(msgspec.json.encode(getattr(spec, name)))
    digest.update(msgspec.json.encode(world.pages))
    digest.update(msgspec.json.encode(world.population))
    campaigns = [msgspec.structs.replace(c, vertical=None) for c in world.campaigns]
    digest.update(msgspec.json.encode(campaigns))
    slots = world.audience.slots(world.draw(np.random.default_rng(5), 1000))
    digest.update(world.truth.logits(slots).tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize(
    ("n", "seed", "config", "pinned"),
    [
        (120, 3, WorldConfig(shared_structure=0.0), "ef538b3bf894ca65"),
        (80, 0, DEMO_PAGED, "47dbd4423f25c97b"),
    ],
)
def test_an_independent_world_is_the_world_of_before_verticals(
    n: int, seed: int, config: WorldConfig, pinned: str
) -> None:
    # digests computed with the code before verticals existed: same truth, same draws
    world = World.generate(n, seed=seed, config=config)
    assert fingerprint(world) == pinned
    assert world.truth.spec.campaign_vertical == []


def test_the_vertical_is_in_the_catalogue_and_the_landing_host(tmp_path: Path) -> None:
    world = World.generate(40, seed=1, config=WorldConfig(shared_structure=0.3))
    for campaign in world.campaigns:
        assert campaign.vertical in VERTICALS
        assert campaign.pages[0].url.startswith(f"https://{campaign.vertical}.example/")
    world.save(tmp_path)
    campaigns, problems = load_catalog(tmp_path / "campaigns.json")
    assert problems == [] and [c.vertical for c in campaigns] == [
        c.vertical for c in world.campaigns
    ]


def profile_effects(world: World, n: int = 4000) -> np.ndarray:
    """(n, n_campaigns): each campaign's logit minus its intercept, on spread traffic, centred."""
    slots = world.audience.slots(world.draw_spread(np.random.default_rng(1), n))
    effects = world.truth.campaign_logits(slots) - world.truth.intercept
    centred: np.ndarray = effects - effects.mean(axis=0)
    return centred


def pooled_correlations(worlds: list[World]) -> tuple[float, float]:
    """Pooled correlation of the profile effects of pairs of campaigns, over all worlds:
    (pairs of one vertical, pairs of different verticals)."""
    sums = np.zeros((2, 2))  # [same, different] x [covariance, product of deviations]
    for world in worlds:
        effects = profile_effects(world)
        cov = effects.T @ effects / len(effects)
        sd = np.sqrt(np.diag(cov))
        group, _ = vertical_groups(world.campaigns)
        same = group[:, None] == group[None, :]
        np.fill_diagonal(same, False)
        different = group[:, None] != group[None, :]
        for k, pairs in enumerate((same, different)):
            sums[k] += cov[pairs].sum(), np.outer(sd, sd)[pairs].sum()
    return float(sums[0, 0] / sums[0, 1]), float(sums[1, 0] / sums[1, 1])


@pytest.mark.parametrize("shared", [0.0, 0.5, 0.8])
def test_campaigns_of_a_vertical_have_effects_correlated_by_the_shared_structure(
    shared: float,
) -> None:
    # each world draws 8 vertical effect functions; 4 worlds: the correlation of 32 draws
    config = WorldConfig(shared_structure=shared)
    worlds = [World.generate(300, seed=seed, config=config) for seed in range(4)]
    same, different = pooled_correlations(worlds)
    assert abs(same - shared) < 0.12
    assert abs(different) < 0.06


def test_shared_structure_changes_only_the_profile_effects() -> None:
    s = 0.5
    independent = World.generate(60, seed=2, config=DEMO_PAGED)
    shared = World.generate(
        60, seed=2, config=msgspec.structs.replace(DEMO_PAGED, shared_structure=s)
    )
    a, b = independent.truth.spec, shared.truth.spec
    assert shared.campaigns == independent.campaigns and shared.pages == independent.pages
    assert a.base_rate == b.base_rate
    assert (a.effect_campaign, a.effect_field, a.effect_value) == (
        b.effect_campaign,
        b.effect_field,
        b.effect_value,
    )
    np.testing.assert_allclose(b.effect_coef, np.array(a.effect_coef) * math.sqrt(1 - s))
    group, _ = vertical_groups(shared.campaigns)
    assert b.campaign_vertical == group.tolist()
    # the table of every campaign is its own part plus its vertical's
    vertical_only = msgspec.structs.replace(b, effect_coef=[0.0] * len(b.effect_coef))
    own_only = msgspec.structs.replace(b, campaign_vertical=[])
    for field, table in shared.truth.tables.items():
        parts = Truth(own_only, shared.sizes).tables[field]
        parts = parts + Truth(vertical_only, shared.sizes).tables[field]
        np.testing.assert_allclose(table, parts, atol=1e-12)
    # campaigns of one vertical carry the same vertical part
    vertical_tables = Truth(vertical_only, shared.sizes).tables
    for v in set(group.tolist()):
        members = np.flatnonzero(group == v)
        for table in vertical_tables.values():
            assert (table[:, members] == table[:, members[:1]]).all()


def test_vertical_logits_are_the_part_each_campaign_shares_with_its_vertical() -> None:
    shared = World.generate(
        60, seed=2, config=msgspec.structs.replace(DEMO_PAGED, shared_structure=0.5)
    )
    spec = shared.truth.spec
    own_only = Truth(msgspec.structs.replace(spec, campaign_vertical=[]), shared.sizes)
    slots = shared.audience.slots(shared.draw(np.random.default_rng(3), 500))
    vertical = shared.truth.vertical_logits(slots)
    assert vertical.shape == (500, 60) and np.abs(vertical).max() > 0.1
    expected = shared.truth.campaign_logits(slots) - own_only.campaign_logits(slots)
    np.testing.assert_allclose(vertical, expected, atol=1e-9)
    independent = World.generate(60, seed=2, config=DEMO_PAGED)
    assert not independent.truth.vertical_logits(slots).any()


def test_a_shared_world_keeps_its_base_rates() -> None:
    config = WorldConfig(base_rate_min=1e-3, base_rate_max=3e-2, shared_structure=0.7)
    world = World.generate(50, seed=4, config=config)
    rng = np.random.default_rng(3)
    slots = world.audience.slots(world.draw_spread(rng, 20_000))
    eligible = world.eligible_slots(slots)
    proba = 1 / (1 + np.exp(-world.truth.campaign_logits(slots)))
    observed = np.where(eligible, proba, 0).sum(axis=0) / np.maximum(eligible.sum(axis=0), 1)
    base = np.array(world.truth.spec.base_rate)
    admitted = eligible.sum(axis=0) > 2000
    ratio = observed[admitted] / base[admitted]
    # calibrated on a 10,000-row sample, checked on another 20,000
    assert np.median(np.abs(np.log(ratio))) < 0.1


def test_a_shared_world_saves_and_loads(tmp_path: Path) -> None:
    config = msgspec.structs.replace(DEMO_PAGED, shared_structure=0.5)
    world = World.generate(40, seed=6, config=config)
    loaded = World.load(world.save(tmp_path))
    assert loaded.truth.spec == world.truth.spec and loaded.config == world.config
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(1), 300)]
    np.testing.assert_array_equal(loaded.true_proba(profiles), world.true_proba(profiles))


def _strip(document: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        document.pop(key, None)


def test_a_world_saved_before_verticals_still_loads(tmp_path: Path) -> None:
    world = World.generate(40, seed=8, config=msgspec.structs.replace(DEMO_PAGED, max_pages=3))
    root = world.save(tmp_path)
    # what the code before verticals wrote: no knob, no vertical columns, no catalogue field
    document = json.loads((root / "world.json").read_text())
    _strip(document["config"], ("shared_structure",))
    _strip(document["truth"], tuple(k for k in document["truth"] if "vertical" in k))
    (root / "world.json").write_text(json.dumps(document))
    catalogue = json.loads((root / "campaigns.json").read_text())
    for entry in catalogue:
        entry.pop("vertical")
    (root / "campaigns.json").write_text(json.dumps(catalogue))
    loaded = World.load(root)
    assert all(c.vertical is None for c in loaded.campaigns)
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(2), 300)]
    np.testing.assert_array_equal(loaded.true_proba(profiles), world.true_proba(profiles))


def _set(key: str, index: int | None, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(truth: dict[str, Any]) -> None:
        if index is None:
            truth[key] = value
        else:
            truth[key][index] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("campaign_vertical", None, [0, 1]), "2 campaign verticals for 30 campaigns"),
        (_set("campaign_vertical", 0, -1), "negative campaign vertical"),
        (_set("vertical_effect_coef", None, [1.0]), "vertical effects: columns of different"),
        (_set("vertical_effect_vertical", 0, -1), "vertical effects: .* owner outside"),
        (_set("vertical_effect_field", 0, "nope"), "vertical effects: unknown field 'nope'"),
        (_set("vertical_effect_value", 0, 10**6), "outside its field's vocabulary"),
        (_set("effect_value", 0, -1), "^.*: effects: an effect on a value outside"),
    ],
)
def test_a_truth_that_does_not_fit_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    root = World.generate(30, seed=1, config=WorldConfig(shared_structure=0.5)).save(tmp_path)
    document = json.loads((root / "world.json").read_text())
    change(document["truth"])
    (root / "world.json").write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match=message):
        World.load(root)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_the_knob_is_checked(value: float) -> None:
    with pytest.raises(InvalidInput, match="shared_structure"):
        WorldConfig(shared_structure=value).validated()
    with pytest.raises(InvalidInput, match="shared_structure"):
        DemoConfig(shared_structure=value)


def test_the_demo_config_reaches_the_world() -> None:
    assert world_config(DemoConfig(shared_structure=0.25)).shared_structure == 0.25


@pytest.mark.parametrize("command", ["simulate", "demo", "replay"])
def test_every_command_refuses_a_bad_shared_structure(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--shared-structure", "1.5"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--shared-structure" in err and "1.5" in err


def test_simulate_writes_a_shared_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--campaigns", "30", "--shared-structure", "0.5", "--clicks", "500"]
    assert main(["simulate", *args, "--out", str(tmp_path)]) == 0
    world = World.load(tmp_path)
    assert world.config.shared_structure == 0.5
    assert len(world.truth.spec.campaign_vertical) == 30
