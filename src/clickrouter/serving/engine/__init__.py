"""The decision engine: the live bank, the decision path, click ids and durable events.

:class:`~.service.PredictorService` decides (through :class:`~.decision.DecisionPath`:
the bank's ranking, then the policy), scores and records sales against the
bank :class:`~.holder.BankHolder` keeps live. No HTTP here: the HTTP app, the
replay and any other transport call the same objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.lazy import lazy_exports

if TYPE_CHECKING:
    from clickrouter.serving.engine.fused import Decider, decider_for
    from clickrouter.serving.engine.holder import BankHolder, LiveBank
    from clickrouter.serving.engine.policy import (
        EpsilonGreedy,
        Greedy,
        Policy,
        Thompson,
        choose_many,
        make_policy,
    )
    from clickrouter.serving.engine.service import PredictorService

_FUSED = "clickrouter.serving.engine.fused"
_HOLDER = "clickrouter.serving.engine.holder"
_POLICY = "clickrouter.serving.engine.policy"
__getattr__ = lazy_exports(
    __name__,
    {
        "BankHolder": _HOLDER,
        "Decider": _FUSED,
        "EpsilonGreedy": _POLICY,
        "Greedy": _POLICY,
        "LiveBank": _HOLDER,
        "Policy": _POLICY,
        "PredictorService": "clickrouter.serving.engine.service",
        "Thompson": _POLICY,
        "choose_many": _POLICY,
        "decider_for": _FUSED,
        "make_policy": _POLICY,
    },
)
__all__ = [
    "BankHolder",
    "Decider",
    "EpsilonGreedy",
    "Greedy",
    "LiveBank",
    "Policy",
    "PredictorService",
    "Thompson",
    "choose_many",
    "decider_for",
    "make_policy",
]
