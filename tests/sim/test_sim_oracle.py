"""OracleScorer: the baselines per offer, against a brute force over the world's truth."""

from __future__ import annotations

import numpy as np
import pytest

from clickrouter.demo.oracle import BASELINES, OracleScorer
from clickrouter.sim import World


def _profiles(world: World, n: int, seed: int) -> list[dict[str, object]]:
    return [c for _, c in world.sample_requests(np.random.default_rng(seed), n)]


@pytest.fixture(scope="module")
def scored(paged_world: World) -> tuple[list[dict[str, object]], np.ndarray, dict[str, np.ndarray]]:
    scorer = OracleScorer(paged_world)
    profiles = _profiles(paged_world, 3000, 8)  # three chunks, the last one partial
    rank = scorer.single_ranking(seed=1)
    return profiles, rank, scorer.baselines(profiles, rank)


def test_the_baselines_are_ordered_on_every_profile(
    scored: tuple[list[dict[str, object]], np.ndarray, dict[str, np.ndarray]],
) -> None:
    _, _, values = scored
    assert list(values) == list(BASELINES)
    oracle = values["oracle"]
    slack = 1e-6 * oracle  # the mean over all offers is summed in float32
    for name in ("random", "single", "campaign_first_page", "campaign_random_page"):
        assert (oracle >= values[name] - slack).all(), name
    assert (values["random"] >= 0).all()
    # pages matter: the oracle's campaign on a fixed page earns less on some requests
    assert (oracle > values["campaign_first_page"] * (1 + 1e-6)).mean() > 0.05
    assert (oracle > values["campaign_random_page"] * (1 + 1e-6)).mean() > 0.05


def test_the_baselines_match_a_brute_force_over_the_truth(
    paged_world: World,
    scored: tuple[list[dict[str, object]], np.ndarray, dict[str, np.ndarray]],
) -> None:
    profiles, rank, values = scored
    world = paged_world
    value = world.true_proba(profiles) * world.payouts
    eligible = world.eligible(profiles)
    for i in range(0, len(profiles), 7):
        ok = np.flatnonzero(eligible[i])
        if len(ok) == 0:
            assert all(values[k][i] == 0 for k in BASELINES)
            continue
        best = ok[np.argmax(value[i, ok])]
        pages = [j for j in ok if world.offer_campaign[j] == world.offer_campaign[best]]
        expected = {
            "random": value[i, ok].mean(),
            "single": value[i, ok[np.argmin(rank[ok])]],
            "campaign_first_page": value[i, pages[0]],
            "campaign_random_page": value[i, pages].mean(),
            "oracle": value[i, best],
        }
        for name, want in expected.items():
            assert values[name][i] == pytest.approx(want, rel=1e-4), (name, i)


def test_chosen_values_take_offer_indices(paged_world: World) -> None:
    scorer = OracleScorer(paged_world)
    profiles = _profiles(paged_world, 200, 9)
    chosen = np.random.default_rng(0).integers(0, len(paged_world.offers), len(profiles))
    want = (paged_world.true_proba(profiles) * paged_world.payouts)[np.arange(200), chosen]
    np.testing.assert_allclose(scorer.chosen_values(profiles, chosen), want, rtol=1e-12)
    chosen[:10] = -1  # an offer the world does not have sells nothing
    assert (scorer.chosen_values(profiles, chosen)[:10] == 0).all()


def test_one_page_per_campaign_the_campaign_baselines_are_the_oracle(world: World) -> None:
    scorer = OracleScorer(world)
    values = scorer.baselines(_profiles(world, 1500, 10), scorer.single_ranking(seed=2))
    np.testing.assert_array_equal(values["campaign_first_page"], values["oracle"])
    np.testing.assert_array_equal(values["campaign_random_page"], values["oracle"])


def test_the_schedule_applies_when_times_are_given(paged_world: World) -> None:
    scorer = OracleScorer(paged_world)
    profiles = _profiles(paged_world, 500, 11)
    rank = scorer.single_ranking(seed=3)
    early = np.full(len(profiles), paged_world.start_ts)
    values, eligible = scorer.chunk_values(paged_world.slots_of(profiles), early)
    assert not eligible[:, paged_world.pages.launch_offer].any()
    timed = scorer.baselines(profiles, rank, ts=early)
    want = np.where(eligible, values, -1).max(axis=1)
    np.testing.assert_allclose(timed["oracle"], np.maximum(want, 0), rtol=1e-6)
    assert values.shape == (len(profiles), len(paged_world.offers))
