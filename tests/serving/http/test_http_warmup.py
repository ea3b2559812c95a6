"""A new bank's decision path is built and run in the loading thread, before the swap.

Without it the first request after a (re)load laid out the decider's tables and
JIT-compiled the numba kernels on the event loop: ~6 s on a fresh checkout,
during which every connection of the worker waited (the demo's drivers timed
out).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from clickrouter.serving.engine.decision import DecisionPath
from clickrouter.serving.engine.durability import open_recorder
from clickrouter.serving.engine.holder import BankHolder
from clickrouter.serving.engine.policy import make_policy
from clickrouter.serving.engine.service import PredictorService
from serving.http.http_support import PROFILE


def test_a_loaded_bank_arrives_with_its_decision_path_prepared(sample_models: Path) -> None:
    decisions = DecisionPath(make_policy("thompson", 0.0))
    holder = BankHolder(sample_models, prepare=decisions.prepare)
    sink = open_recorder(None, "warmup-test")
    service = PredictorService(holder, decisions, sink)
    try:
        live = asyncio.run(holder.reload())
        prepared = decisions._prepared
        assert prepared is not None and prepared.bank is live.bank
        assert sink.written == 0  # the warm-up decision is not a click
        outcome = service.decide(dict(PROFILE))
        assert decisions.decider(live.bank) is prepared  # the first request reuses it
        assert outcome.campaign_id in live.bank.campaign_ids
    finally:
        sink.close()
        holder.close()


def test_a_failing_warm_up_does_not_reject_the_version(sample_models: Path) -> None:
    def broken(_live: object) -> None:
        raise RuntimeError("warm-up failed")

    holder = BankHolder(sample_models, prepare=broken)
    try:
        live = asyncio.run(holder.reload())
        assert holder.live is live and holder.rejected is None
    finally:
        holder.close()
