"""Pages launched and retired during a replay reach the trainer's catalogue and the bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clickrouter.catalogue import load_catalog
from clickrouter.demo.config import DemoConfig
from clickrouter.modelstore import ModelStore
from clickrouter.replay.loop import ReplayLoop, SeedRun, load_world
from clickrouter.replay.settings import ReplaySettings
from clickrouter.sim.world import World

SCHEDULED = ReplaySettings(
    demo=DemoConfig(
        campaigns=40,
        seed=5,
        max_pages=5,
        page_launch_share=0.4,
        page_retire_share=0.4,
        retrain_hours=12.0,  # a whole day is a cycle edge: changes land on one
    ),
    clicks=14_000,
    days=7.0,
    oracle_sample=0,  # every request is in ``run.sampled``
    bins=7,
)


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, SeedRun, Path]:
    workdir = tmp_path_factory.mktemp("scheduled") / "work"
    world = load_world(SCHEDULED)
    loop = ReplayLoop(SCHEDULED, world, workdir, traffic_seed=0)
    return world, loop.run(), workdir


def scheduled_offers(world: World) -> tuple[np.ndarray, np.ndarray]:
    """The offers the schedule launches and those it retires."""
    pages = world.pages
    return np.array(pages.launch_offer, np.int64), np.array(pages.retire_offer, np.int64)


def test_the_world_schedules_pages_within_the_run() -> None:
    world = load_world(SCHEDULED)
    launched, retired = scheduled_offers(world)
    assert len(launched) >= 3 and len(retired) >= 3
    days = (world.change_times - world.start_ts) / 86400.0
    assert len(days) >= 2 and (days >= 1).all() and (days < 7).all()


def test_no_request_is_shown_a_page_before_its_launch_or_after_its_retirement(
    scheduled: tuple[World, SeedRun, Path],
) -> None:
    world, run, _ = scheduled
    ts, shown, _ = run.sampled
    assert len(ts) == SCHEDULED.clicks - run.no_fill
    epochs = world.live_epoch(ts)
    for epoch in np.unique(epochs):
        rows = epochs == epoch
        assert world.live_offers(int(epoch))[shown[rows]].all(), f"epoch {epoch}"


def test_launched_pages_are_served_once_live_and_retired_ones_before(
    scheduled: tuple[World, SeedRun, Path],
) -> None:
    world, run, _ = scheduled
    ts, shown, _ = run.sampled
    launched, retired = scheduled_offers(world)
    launch_ts = dict(zip(launched.tolist(), world.pages.launch_ts, strict=True))
    retire_ts = dict(zip(retired.tolist(), world.pages.retire_ts, strict=True))
    after_launch = [o for o, t in zip(shown, ts, strict=True) if t >= launch_ts.get(o, np.inf)]
    before_retirement = [o for o, t in zip(shown, ts, strict=True) if t < retire_ts.get(o, -1)]
    assert len(set(after_launch)) >= 2  # a launched page is explored once it exists
    assert len(set(before_retirement)) >= 2  # and a retired one was served until then


def test_the_last_published_catalogue_is_the_one_live_at_the_end(
    scheduled: tuple[World, SeedRun, Path],
) -> None:
    world, run, workdir = scheduled
    # the loop's workdir is kept by ReplayLoop (run_seed removes its own)
    store = ModelStore(workdir / "store")
    published, problems = load_catalog(store.path_of(store.current()) / "campaigns.json")
    assert not problems
    end = float(run.cycles[-1]["sim_ts"])
    assert published == world.catalogue_at(end)
    active = {(c.id, p.id) for c in published for p in c.pages if p.active}
    launched, retired = scheduled_offers(world)
    named = [(o.campaign.id, o.page.id) for o in world.offers]
    assert all(named[o] in active for o in launched)
    assert not any(named[o] in active for o in retired)
