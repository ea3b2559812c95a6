"""The report's offers: the live value of the page each click went to, the page baselines.

Event logs come from the simulator's event generator (a uniform logging
policy over the eligible offers, every click naming its campaign and page),
and the expected values are recomputed from the world's own float64 truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.eventlog import read_tables
from clickrouter.demo.html import headline_rows, ratio_rows
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.revenue import POLICIES, policy_values, summary
from clickrouter.demo.stages import world_config
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.eventgen import generate_events
from clickrouter.sim.world import World

BASELINES = ("random", "single", "campaign_first_page", "campaign_random_page")


def offer_values(world: World, profiles: list[dict[str, object]], offers: np.ndarray) -> np.ndarray:
    """The world's float64 expected value of one offer per profile."""
    return world.true_proba_slots(world.slots_of(profiles), offers) * world.payouts[offers]


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    """A world whose campaigns run several pages (the demo's default), and its event log."""
    out = tmp_path_factory.mktemp("paged")
    world = World.generate(40, seed=5, config=world_config(DemoConfig(campaigns=40)))
    generate_events(world, out, 3000)
    return world, out / "events"


def test_the_demos_default_world_runs_several_pages_per_campaign() -> None:
    world = World.generate(200, seed=0, config=world_config(DemoConfig()))
    pages = np.array([len(c.pages) for c in world.campaigns])
    assert pages.min() == 1 and pages.max() <= 5
    assert (pages <= 2).mean() > 0.6 and (pages > 1).any()
    assert len(world.offers) == pages.sum()


def test_the_live_value_is_that_of_the_page_the_click_went_to(
    paged: tuple[World, Path],
) -> None:
    world, events = paged
    tables = read_tables(events)
    assert len(set(tables.landing_page_id)) > 1  # the log names several pages
    sample = np.arange(len(tables))
    values = policy_values(tables, OracleScorer(world), sample, seed=0)
    logged = world.offer_index(tables.campaign_id, tables.landing_page_id)
    expected = offer_values(world, tables.profiles, np.asarray(logged))
    assert values["live_all"] == pytest.approx(expected, rel=1e-5)
    # the same clicks valued on their campaign's first page differ: the page counted
    index = {(o.campaign.id, o.page.id): i for i, o in enumerate(world.offers)}
    first = np.array([index[cid, world.campaigns[world.campaign_index[cid]].pages[0].id]
                      for cid in tables.campaign_id])  # fmt: skip
    moved = np.asarray(logged) != first
    assert moved.any()
    assert not np.allclose(offer_values(world, tables.profiles, first)[moved], expected[moved])


def test_the_page_baselines_sit_between_random_and_the_oracle(
    paged: tuple[World, Path],
) -> None:
    world, events = paged
    tables = read_tables(events)
    sample = np.arange(0, len(tables), 3)
    values = policy_values(tables, OracleScorer(world), sample, seed=0)
    assert set(POLICIES) <= set(values)
    oracle = values["oracle"]
    for name in (*BASELINES, "live"):
        assert len(values[name]) == len(sample)  # on the same requests
        assert (values[name] <= oracle * (1 + 1e-6) + 1e-12).all(), name
    assert values["campaign_first_page"].mean() < oracle.mean()  # some first page is not best
    result = summary(values, tables.sim_ts[sample], 0.25)
    for label in ("overall", "final"):
        per_1k = result[label]["per_1k"]
        assert set(per_1k) == set(POLICIES)
        ratio = per_1k["live"] / per_1k["campaign_first_page"] - 1
        assert result[label]["uplift_over_first_page"] == pytest.approx(ratio)
        assert result[label]["stderr_live_minus_first_page"] > 0


def test_an_event_log_without_page_ids_reports_every_click_on_the_default_page(
    tmp_path: Path,
) -> None:
    world = World.generate(20, seed=4, config=WorldConfig(max_pages=1))
    generate_events(world, tmp_path, 800)
    for segment in (tmp_path / "events").glob("*.jsonl"):  # as a log from before pages
        events = [json.loads(line) for line in segment.read_text().splitlines()]
        for event in events:
            event.pop("landing_page_id", None)
        segment.write_text("".join(json.dumps(event) + "\n" for event in events))
    tables = read_tables(tmp_path / "events")
    assert len(tables) == 800 and set(tables.landing_page_id) == {"default"}
    sample = np.arange(len(tables))
    values = policy_values(tables, OracleScorer(world), sample, seed=0)
    chosen = np.array([world.campaign_index[c] for c in tables.campaign_id])
    expected = world.true_proba(tables.profiles)[sample, chosen] * world.payouts[chosen]
    assert values["live"] == pytest.approx(expected, rel=1e-5)
    # one page per campaign: the right campaign on its first page is the oracle
    assert values["campaign_first_page"] == pytest.approx(values["oracle"], rel=1e-6)
    assert values["campaign_random_page"] == pytest.approx(values["oracle"], rel=1e-6)


def test_the_summary_tables_name_the_page_rows() -> None:
    per_1k = {name: 100.0 + i for i, name in enumerate(POLICIES)}
    section = {
        "per_1k": per_1k,
        "uplift_over_random": 0.5,
        "uplift_over_single": 0.1,
        "uplift_over_first_page": -0.02,
        "share_of_oracle": 0.9,
    }
    report = {"revenue": {"overall": section, "final": section}}
    labels = [row[0] for row in headline_rows(report)]
    assert "right campaign, first page" in labels and "right campaign, random page" in labels
    assert ("uplift over right campaign, first page", "-2.0%", "-2.0%") in ratio_rows(report)
