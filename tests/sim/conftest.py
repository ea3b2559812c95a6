"""Worlds shared by the simulator tests (built once per session: generation takes ~1 s)."""

from __future__ import annotations

import pytest

from clickrouter.sim import World, WorldConfig

# conversion rates high enough that a few thousand clicks carry many sales
HOT = WorldConfig(base_rate_min=0.02, base_rate_max=0.2)


@pytest.fixture(scope="session")
def world() -> World:
    """A default-config world with 300 campaigns."""
    return World.generate(n_campaigns=300, seed=11)


@pytest.fixture(scope="session")
def hot_world() -> World:
    """Few campaigns, high base rates: per-campaign statistics are testable quickly."""
    return World.generate(n_campaigns=12, seed=5, config=HOT)


# several pages per campaign, some targeted, paused, launched or retired during the first week
PAGED = WorldConfig(
    requests_per_day=4_000.0,  # a few thousand clicks span the week the schedule acts in
    base_rate_min=0.02,
    base_rate_max=0.2,
    max_pages=5,
    extra_pages_mean=1.2,
    page_launch_share=0.15,
    page_retire_share=0.15,
)


@pytest.fixture(scope="session")
def paged_world() -> World:
    """60 campaigns with 1 to 5 landing pages each, high base rates."""
    return World.generate(n_campaigns=60, seed=7, config=PAGED)
