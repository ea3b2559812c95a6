"""The Thompson kernel against the one that reads every candidate in every draw.

``policy._thompson_many`` reads, per draw, only the groups of offers whose
bound can still reach the running best; ``reference.thompson_kernel`` is the
straightforward kernel (every candidate, every draw, in column order). Both
draw their pool offsets from numba's generator, so from the same seed they
must pick the same columns with bit-identical propensities: random scores,
eligibility, noise levels and pools, with and without landing pages, with
pools of few distinct factors so that ties are frequent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.modelstore.manifest import CampaignRecord, Manifest
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import (
    GROUP,
    DrawTables,
    GammaThompson,
    Thompson,
    _floor,
    _seed_kernel,
    _thompson_many,
    group_reach,
)
from reference.sample_models import make_sample_directory, random_profiles
from reference.thompson_kernel import thompson_many as reference_many

POOL = 256


def both(
    tables: DrawTables, proba: np.ndarray, mask: np.ndarray, draws: int, budget: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run the kernel and the reference from the same seed; assert the same choices."""
    best = np.zeros(len(proba), dtype=np.int64)
    got = np.empty(len(proba), dtype=np.int64), np.empty(len(proba))
    want = np.empty(len(proba), dtype=np.int64), np.empty(len(proba))
    t = tables
    kernel = (t.payouts, t.level, t.factors, t.campaign_of, t.page_level, t.page_factors)
    _seed_kernel(17)
    reference_many(proba, mask, best, *kernel, t.high, t.low, draws, budget, *want)
    _seed_kernel(17)
    _thompson_many(
        proba, mask, best, *kernel, t.high, t.low, t.reach, draws, budget, True, *got
    )  # fmt: skip
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])  # bit for bit
    return got


def tables_of(
    payouts: np.ndarray,
    campaign_of: np.ndarray,
    factors: np.ndarray,
    level: np.ndarray,
    page_factors: np.ndarray,
    page_level: np.ndarray,
) -> DrawTables:
    """The tables as ``policy._with_bounds`` lays them out, from given pools."""
    return DrawTables(
        payouts,
        level,
        factors,
        payouts * factors.max(axis=1)[level] * page_factors.max(axis=1)[page_level],
        payouts * factors.min(axis=1)[level] * page_factors.min(axis=1)[page_level],
        campaign_of,
        page_level,
        page_factors,
        group_reach(level, factors, campaign_of, page_level, page_factors),
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[DrawTables, np.ndarray, np.ndarray, int, int]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    campaigns = draw(st.integers(1, 120))
    paged = draw(st.booleans())
    pages = rng.integers(1, 4, campaigns) if paged else np.ones(campaigns, dtype=np.int64)
    campaign_of = np.repeat(np.arange(campaigns), pages)
    n = len(campaign_of)
    payouts = rng.choice([1.0, 2.0, 3.5], n) if draw(st.booleans()) else rng.uniform(0.5, 4, n)
    levels = draw(st.integers(1, 6))
    if draw(st.booleans()):  # few distinct factors: equal scores are frequent
        factors = rng.choice([0.25, 0.5, 1.0, 2.0], (levels, POOL))
    else:
        factors = np.exp(rng.normal(0, rng.uniform(0, 2, (levels, 1)), (levels, POOL)))
    level = rng.integers(0, levels, campaigns)[campaign_of]
    if paged:
        page_factors = np.exp(rng.normal(0, rng.uniform(0, 1, (3, 1)), (3, POOL)))
        page_level = rng.integers(0, 3, n)
    else:
        page_factors, page_level = np.ones((1, POOL)), np.zeros(n, dtype=np.int64)
    tables = tables_of(payouts, campaign_of, factors, level, page_factors, page_level)
    rows = draw(st.integers(1, 12))
    proba = (
        rng.choice([0.0, 0.01, 0.02, 0.5], (rows, n))
        if draw(st.booleans())
        else rng.random((rows, n)) ** rng.uniform(1, 8)
    )
    mask = rng.random((rows, n)) < draw(st.sampled_from([0.05, 0.5, 0.95, 1.0]))
    draws = draw(st.integers(0, 20))
    budget = draw(st.sampled_from([0, 1, 7, 64, 8192]))
    return tables, proba, mask, draws, budget


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_the_same_winners_and_propensities_as_reading_every_candidate(
    world: tuple[DrawTables, np.ndarray, np.ndarray, int, int],
) -> None:
    both(*world)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.sampled_from([0.0, 0.3, 1.0, np.inf, np.nan]), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.lists(st.floats(0, 50), min_size=n, max_size=n),
        )
    )
)
def test_the_floor_is_the_best_eligible_worst_draw(
    columns: tuple[list[float], list[bool], list[float]],
) -> None:
    """Any length (not only whole lanes); what ineligible columns hold never counts."""
    kinds = (float, bool, float)
    scores, eligible, low = (np.array(c, dtype=d) for c, d in zip(columns, kinds, strict=True))
    proba = np.where(eligible, np.nan_to_num(scores, nan=0.5, posinf=0.7), scores)
    want = max([0.0, *(p * w for p, w, e in zip(proba, low, eligible, strict=True) if e)])
    assert _floor(proba, eligible, low) == want


def test_an_equal_score_in_an_earlier_group_wins_as_in_column_order() -> None:
    """The group of the highest bound is read first; an earlier group's equal score
    must still win, as it does when the columns are read in order."""
    n = GROUP + 8
    factors = np.ones((2, POOL))
    factors[1] = 0.25
    factors[1, 0] = 1.0  # the second group's best draws: that group leads the bounds
    level = np.zeros(n, dtype=np.int64)
    level[GROUP + 1 :] = 1
    payouts = np.ones(n)
    payouts[GROUP + 1 :] = 2.0
    pages = np.ones((1, POOL)), np.zeros(n, dtype=np.int64)
    tables = tables_of(payouts, np.arange(n), factors, level, *pages)
    proba = np.zeros((4, n))
    proba[:, [0, GROUP, GROUP + 1]] = 1.0  # the first two score 1 in every draw
    proba[:, GROUP + 2 :] = 0.9  # more candidates than groups: the draw uses the bounds
    assert both(tables, proba, proba > 0, 16, 8192)[0].tolist() == [0, 0, 0, 0]


def test_a_group_bound_covers_every_column_of_the_group() -> None:
    rng = np.random.default_rng(3)
    campaign_of = np.repeat(np.arange(40), rng.integers(1, 4, 40))
    n = len(campaign_of)
    factors = np.exp(rng.normal(0, 1, (3, POOL)))
    page_factors = np.exp(rng.normal(0, 0.5, (2, POOL)))
    level, page_level = rng.integers(0, 3, n), rng.integers(0, 2, n)
    reach = group_reach(level, factors, campaign_of, page_level, page_factors)
    start = np.arange(POOL)[:, None]
    exact = (
        factors[level, (start + campaign_of) % POOL]
        * page_factors[page_level, (start + np.arange(n)) % POOL]
    )
    for g in range(reach.shape[1]):
        group = exact[:, g * GROUP : (g + 1) * GROUP].max(axis=1)
        assert (reach[:, g].astype(np.float64) >= group).all()
        assert np.allclose(reach[:, g], group, rtol=1e-6)  # and is tight


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBank]:
    """A real bank whose manifest gives a range of evidence (so a range of levels)."""
    directory = make_sample_directory(tmp_path_factory.mktemp("bank") / "models", 150)
    loaded = load_live_bank(directory, None)
    rng = np.random.default_rng(8)
    records = {}
    for column, cid in enumerate(loaded.bank.campaign_ids):
        if column % 7 == 0:
            records[cid] = CampaignRecord(kind="logistic", positives=int(rng.integers(20, 900)))
        else:
            records[cid] = CampaignRecord(kind="base_rate", positives=int(rng.poisson(2.0)))
    yield dataclasses.replace(loaded, manifest=Manifest(campaigns=records))
    loaded.bank.close()


@pytest.mark.parametrize("kind", [Thompson, GammaThompson])
def test_the_policies_tables_choose_as_the_reference(kind: type[Thompson], live: LiveBank) -> None:
    policy = kind(scale=0.5, profile_spread=0.5, seed=4)
    rng = np.random.default_rng(2)
    proba = live.bank.predict_proba(random_profiles(rng, 300))
    mask = rng.random(proba.shape) < 0.8
    both(policy._prepare(live), proba, mask, policy.draws, policy.DRAW_BUDGET)
