"""The oracle's fused baselines equal the straightforward matrices, float for float.

:meth:`OracleScorer.baseline_values` computes the baselines a block of rows at
a time in compiled kernels; the reference below is the code it replaced: every
offer's value and eligibility as (rows x offers) matrices
(:meth:`OracleScorer.chunk_values` as it was), then numpy reductions over them.
Random worlds (one or several pages per campaign, targeted, paused, launched
and retired pages), random slots anywhere in the vocabulary, random times
around the page schedule and random ranks (with ties).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.demo.oracle import BASELINES, OracleScorer
from clickrouter.sim import World, WorldConfig


def reference_values(
    scorer: OracleScorer, slots: dict[str, np.ndarray], ts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every offer's expected value (float32) and eligibility, as whole matrices."""
    logits = np.broadcast_to(scorer.intercept, (len(slots["country"]), len(scorer.intercept)))
    logits = logits + scorer.tables["country"][slots["country"]]
    for name, table in scorer.tables.items():
        if name != "country":
            logits += table[slots[name]]
    if scorer.offer_campaign is not None:
        logits = np.take(logits, scorer.offer_campaign, axis=1)
    if scorer.page_lift is not None:
        logits += scorer.page_lift
    for name, table in scorer.page_tables.items():
        logits += table[slots[name]]
    np.negative(logits, out=logits)
    np.exp(logits, out=logits)
    logits += 1.0
    return scorer.payouts / logits, scorer.world.eligible_slots(slots, ts)


def reference_baselines(
    scorer: OracleScorer, values: np.ndarray, eligible: np.ndarray, rank: np.ndarray
) -> dict[str, np.ndarray]:
    world = scorer.world
    rows = np.arange(len(values))
    n_eligible = eligible.sum(axis=1)
    masked = np.where(eligible, values, 0)
    best = masked.argmax(axis=1)
    first = np.where(eligible, rank[None, :], len(rank)).argmin(axis=1)
    campaign = world.offer_campaign[best]
    k = np.arange(scorer.pages_per_campaign)[None, :]
    cols = np.minimum(world.offer_start[campaign][:, None] + k, values.shape[1] - 1)
    ok = eligible[rows[:, None], cols] & (k < world.offer_count[campaign][:, None])
    page_values = values[rows[:, None], cols]
    mean = np.where(ok, page_values, 0).sum(axis=1, dtype=np.float64) / np.maximum(
        ok.sum(axis=1), 1
    )
    chosen = {
        "random": masked.sum(axis=1) / np.maximum(n_eligible, 1),
        "single": values[rows, first],
        "campaign_first_page": page_values[rows, ok.argmax(axis=1)],
        "campaign_random_page": mean,
        "oracle": values[rows, best],
    }
    return {name: np.where(n_eligible > 0, v, 0.0) for name, v in chosen.items()}


@functools.cache
def scorer_of(campaigns: int, seed: int, pages: int, launch: float, retire: float) -> OracleScorer:
    config = WorldConfig(
        max_pages=pages,
        extra_pages_mean=1.5,
        page_launch_share=launch,
        page_retire_share=retire,
        page_targeted_share=0.4,
        page_inactive_share=0.1,
    )
    return OracleScorer(World.generate(campaigns, seed=seed, config=config))


def random_slots(world: World, rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
    return {name: rng.integers(0, size, m) for name, size in world.sizes.items()}


@settings(max_examples=15, deadline=None)
@given(
    campaigns=st.integers(1, 25),
    seed=st.integers(0, 3),
    pages=st.integers(1, 5),
    schedule=st.sampled_from([(0.0, 0.0), (0.3, 0.3), (0.5, 0.0)]),
    m=st.integers(0, 70),
    timed=st.booleans(),
    ties=st.booleans(),
    draw=st.integers(0, 2**32 - 1),
)
def test_the_fused_baselines_equal_the_matrices(
    campaigns: int,
    seed: int,
    pages: int,
    schedule: tuple[float, float],
    m: int,
    timed: bool,
    ties: bool,
    draw: int,
) -> None:
    scorer = scorer_of(campaigns, seed, pages, *schedule)
    world, n = scorer.world, len(scorer.payouts)
    rng = np.random.default_rng(draw)
    slots = random_slots(world, rng, m)
    # around the first week, where pages launch and retire (whole days: some exactly at a change)
    ts = world.start_ts + rng.choice([rng.uniform(-86400, 8 * 86400), 86400.0 * 3], m)
    rank = rng.integers(0, max(n // 3, 1), n) if ties else rng.permutation(n)
    when = ts if timed else None
    want = reference_baselines(scorer, *reference_values(scorer, slots, when), rank)
    got = scorer.baseline_values(slots, when, rank)
    assert list(got) == list(BASELINES)
    for name in BASELINES:
        assert got[name].dtype == np.float64
        np.testing.assert_array_equal(got[name], want[name].astype(np.float64), err_msg=name)


def test_the_demo_world_baselines_equal_the_matrices() -> None:
    """The demo's own world shape (pages, targeting): rows past several blocks."""
    scorer = scorer_of(300, 0, 5, 0.0, 0.0)
    world = scorer.world
    rng = np.random.default_rng(1)
    draw = world.draw_spread(rng, 300)
    slots, ts = world.audience.slots(draw), draw.ts_ms / 1000.0
    rank = scorer.single_ranking(seed=0)
    want = reference_baselines(scorer, *reference_values(scorer, slots, ts), rank)
    got = scorer.baseline_values(slots, ts, rank)
    for name in BASELINES:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float64), err_msg=name)


def test_slots_outside_the_vocabulary_are_refused() -> None:
    scorer = scorer_of(5, 0, 2, 0.0, 0.0)
    world = scorer.world
    slots = random_slots(world, np.random.default_rng(0), 4)
    slots["device"][2] = world.sizes["device"]
    rank = np.arange(len(scorer.payouts))
    with pytest.raises(ValueError, match="device"):
        scorer.baseline_values(slots, None, rank)
    slots["device"][2] = -1
    with pytest.raises(ValueError, match="device"):
        scorer.baseline_values(slots, None, rank)
    with pytest.raises(ValueError, match="rank"):
        scorer.baseline_values(random_slots(world, np.random.default_rng(1), 4), None, rank[1:])
