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
