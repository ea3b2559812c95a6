"""Scoring every offer (campaign, landing page) for a request: the ModelBank, its compiler
and its cache.

The decision engine (:mod:`clickrouter.serving.engine`) chooses with a bank;
the HTTP predictor (:mod:`clickrouter.serving.http`) serves the engine. Names
load lazily: importing the HTTP package (the CLI's command list does) must not
import scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.lazy import lazy_exports

if TYPE_CHECKING:
    from clickrouter.serving.bank import Decision, ModelBank, RankedOffer
    from clickrouter.serving.cache import prune_cache

__getattr__ = lazy_exports(
    __name__,
    {
        "Decision": "clickrouter.serving.bank",
        "ModelBank": "clickrouter.serving.bank",
        "RankedOffer": "clickrouter.serving.bank",
        "prune_cache": "clickrouter.serving.cache",
    },
)
__all__ = ["Decision", "ModelBank", "RankedOffer", "prune_cache"]
