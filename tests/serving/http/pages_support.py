"""A model directory whose campaigns run several landing pages, some targeted, one inactive.

Real fitted sklearn pipelines: campaign ``a``'s model reads the ``landing_page``
input (its page ``fr`` converts far better than the others), ``b`` uses the
short form (one page, ``default``), ``c``'s model reads no page (its pages
score alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter.catalogue import PAGE_INPUT, Rule, load_catalog
from clickrouter.profile import extract_profile, profile_frame
from fakes import fitted_pipeline, random_profiles, write_model_directory

A_PAGES = ("fr", "form", "lite")
PAGE_EFFECT = {"fr": 2.5, "form": 0.0, "lite": 0.0}


def paged_model(seed: int = 0) -> Any:
    """A pipeline reading country, os and the page; page ``fr`` lifts P(sale) a lot."""
    rng = np.random.default_rng(seed)
    frame = profile_frame(random_profiles(rng, 600))
    page = rng.choice(list(A_PAGES), len(frame))
    frame[PAGE_INPUT] = pd.Series(page, dtype=object)
    logit = -2.0 + np.array([PAGE_EFFECT[p] for p in page])
    labels = rng.random(len(frame)) < 1 / (1 + np.exp(-logit))
    pre = ColumnTransformer(
        [
            ("profile", OneHotEncoder(handle_unknown="ignore"), ["country", "os"]),
            ("page", OneHotEncoder(handle_unknown="ignore"), [PAGE_INPUT]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, labels)


def url(campaign: str, page: str) -> str:
    return f"https://{campaign}.example/{page}?k={{click_id}}"


def paged_catalog() -> list[dict[str, Any]]:
    """``a``: fr (FR only), form (inactive), lite (not on ios); ``b``: one page;
    ``c``: x (ios only), y. ``a`` pays most, so a greedy choice shows its best page."""
    return [
        {
            "id": "a",
            "payout": 20.0,
            "landing_pages": [
                {"id": "fr", "url": url("a", "fr"), "targeting": {"countries": ["FR"]}},
                {"id": "form", "url": url("a", "form"), "active": False},
                {"id": "lite", "url": url("a", "lite"), "targeting": {"os": {"deny": ["ios"]}}},
            ],
        },
        {"id": "b", "landing_page": url("b", "default"), "payout": 1.0},
        {
            "id": "c",
            "payout": 1.0,
            "landing_pages": [
                {"id": "x", "url": url("c", "x"), "targeting": {"os": ["ios"]}},
                {"id": "y", "url": url("c", "y")},
            ],
        },
    ]


def write_paged_directory(root: Path) -> Path:
    models = {"a": paged_model(0), "b": fitted_pipeline(1), "c": fitted_pipeline(2)}
    return write_model_directory(root, models, paged_catalog())


def admits(directory: Path, campaign_id: str, page_id: str, raw: dict[str, Any]) -> bool:
    """Whether the catalogue lets offer (campaign, page) serve request ``raw``."""
    campaigns, _ = load_catalog(directory / "campaigns.json")
    campaign = next(c for c in campaigns if c.id == campaign_id)
    page = campaign.page(page_id)
    canonical = extract_profile(raw)
    rules: list[Rule] = [*campaign.rules().values(), *page.rules().values()]
    fields = [*campaign.rules(), *page.rules()]
    return (
        campaign.active
        and page.active
        and all(rule.admits(str(canonical[f])) for f, rule in zip(fields, rules, strict=True))
    )
