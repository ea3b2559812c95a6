"""The simulated campaign catalogue: ids, landing pages, payouts, targeting, activity.

Written as the model directory's ``campaigns.json`` (see
:mod:`clickrouter.catalogue`), so the predictor serves the same
campaigns the simulator routes clicks to. Targeted countries are drawn by
traffic share: advertisers target markets that exist. Each campaign belongs to
one of :data:`VERTICALS`, recorded in the catalogue (``vertical``) and in its
landing page's host.
"""

from __future__ import annotations

import numpy as np

from clickrouter.catalogue import Campaign, Rule
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.devices import OS_NAMES
from clickrouter.sim.population import Population

# a campaign's vertical names its landing page's host and groups the effects it shares
VERTICALS = ("shop", "games", "dating", "finance", "travel", "news", "vpn", "food")


def campaign_id(index: int, n_campaigns: int) -> str:
    """Zero-padded ids (``c00042``) so catalogue order is also lexical order."""
    return f"c{index:0{max(5, len(str(n_campaigns - 1)))}d}"


def build_campaigns(
    rng: np.random.Generator, n: int, population: Population, config: WorldConfig
) -> list[Campaign]:
    """``n`` campaigns with payouts, landing pages and targeting drawn from ``config``."""
    payouts = np.clip(rng.lognormal(np.log(config.payout_median), config.payout_sigma, n), 0.5, 500)
    active = rng.random(n) >= config.inactive_share
    return [
        Campaign(
            id=(cid := campaign_id(i, n)),
            vertical=(vertical := VERTICALS[int(rng.integers(len(VERTICALS)))]),
            landing_page=f"https://{vertical}.example/{cid}/landing?click_id={{click_id}}",
            payout=round(float(payouts[i]), 2),
            active=bool(active[i]),
            targeting=_targeting(rng, population, config),
        )
        for i in range(n)
    ]


def _targeting(
    rng: np.random.Generator, population: Population, config: WorldConfig
) -> dict[str, Rule | list[str]]:
    targeting: dict[str, Rule | list[str]] = {}
    u = rng.random()
    if u < config.country_allow_share:
        targeting["countries"] = Rule(allow=_countries(rng, population, 1, 5))
    elif u < config.country_allow_share + config.country_deny_share:
        targeting["countries"] = Rule(deny=_countries(rng, population, 1, 3))
    if rng.random() < config.os_allow_share:
        targeting["os"] = Rule(allow=(OS_NAMES[int(rng.integers(len(OS_NAMES)))],))
    return targeting


def _countries(
    rng: np.random.Generator, population: Population, low: int, high: int
) -> tuple[str, ...]:
    k = int(rng.integers(low, high + 1))
    p = np.array(population.country_p)
    picks = rng.choice(len(p), size=k, replace=False, p=p / p.sum())
    return tuple(population.countries[i] for i in sorted(picks))


def vertical_groups(campaigns: list[Campaign]) -> tuple[np.ndarray, int]:
    """Each campaign's vertical as an index, and how many verticals there are.

    :data:`VERTICALS` come first, in their order (so a vertical's index, hence
    its drawn effects, does not depend on which campaigns a world has); other
    names follow in order of appearance, and a campaign without a vertical is
    a vertical of its own.
    """
    index: dict[str | None, int] = {name: i for i, name in enumerate(VERTICALS)}
    groups = np.empty(len(campaigns), dtype=np.int64)
    n = len(VERTICALS)
    for i, campaign in enumerate(campaigns):
        group = index.get(campaign.vertical)
        if group is None:
            group, n = n, n + 1
            if campaign.vertical is not None:
                index[campaign.vertical] = group
        groups[i] = group
    return groups, n
