"""What a policy earns on a finished demo's final models: the price of exploring, alone.

A demo's output directory holds its world (the truth) and its model store. On
fresh requests drawn from that world over the demo's span, every candidate
policy chooses with the final version's bank and manifest, exactly as the
predictor would, and earns the truth's expected value of its choices; the
greedy choice on the same scores and the oracle are the references. Nothing
is learned here, so the gap between a policy and greedy is what its
exploration costs once the models are as good as the run made them, and
greedy against the oracle is what the models still miss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clickrouter.demo.oracle import OracleScorer
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import Policy
from clickrouter.sim.world import World


@dataclass
class EndState:
    """The final bank and, per request, its scores, eligibility and the truth's values."""

    live: LiveBank
    proba: np.ndarray  # (n, bank columns)
    eligible: np.ndarray  # (n, bank columns)
    values: np.ndarray  # (n, bank columns): P(sale) x payout, 0 where ineligible

    def earned(self, columns: np.ndarray) -> float:
        """Expected revenue per 1,000 clicks of choosing ``columns`` (one per request)."""
        return 1000 * float(self.values[np.arange(len(columns)), columns].mean())

    def greedy(self) -> np.ndarray:
        payouts = self.live.bank.payouts_  # per column: one per offer
        return np.where(self.eligible, self.proba * payouts, -1.0).argmax(axis=1)

    def oracle(self) -> float:
        return 1000 * float(self.values.max(axis=1).mean())

    def choices(self, policy: Policy, best: np.ndarray) -> np.ndarray:
        """The policy's column per request; ``best``: the greedy columns (:meth:`greedy`)."""
        n_eligible = self.eligible.sum(axis=1)
        return np.array(
            [
                policy.choose_scored(
                    self.live, self.proba[i], self.eligible[i], int(best[i]), int(n_eligible[i])
                )[0]
                for i in range(len(best))
            ]
        )


def load_end_state(demo_out: Path, requests: int, seed: int = 5) -> EndState:
    """The final version of the demo in ``demo_out``, on ``requests`` fresh requests."""
    world = World.load(demo_out / "world")
    report = json.loads((demo_out / "report.json").read_text())
    days = (report["events"]["sim_end"] - report["events"]["sim_start"]) / 86400.0
    draw = world.draw_spread(np.random.default_rng(seed), requests, days=max(days, 1 / 24))
    slots = world.audience.slots(draw)
    canon = world.renderer.canonical_columns(draw)
    profiles = [dict(zip(canon, row, strict=True)) for row in zip(*canon.values(), strict=True)]
    live = load_live_bank(demo_out / "store" / "versions" / report["models"]["version"], None)
    to_catalogue = np.asarray(world.offer_index(live.bank.campaign_ids, live.bank.page_ids))
    scorer, parts = OracleScorer(world), []
    for lo in range(0, requests, 2048):
        values, eligible = scorer.chunk_values({f: v[lo : lo + 2048] for f, v in slots.items()})
        parts.append(np.where(eligible, values, 0.0)[:, to_catalogue])
    return EndState(
        live=live,
        proba=live.bank.predict_proba(profiles),
        eligible=world.eligible_slots(slots)[:, to_catalogue],
        values=np.vstack(parts),
    )
