"""What each kind of knowledge is worth: shares of the oracle a chooser reaches
when it knows the world's truth except one part, averaged away.

A simulated world's truth per offer (campaign ``c``, page ``p``) is

    logit P(sale | x, c, p) = a_c + f_c(x) + g_p(x)

with ``a_c + f_c(x)`` the campaign's own model (its level and its profile
effects) and ``g_p(x)`` the page's effect (a lift and per-profile terms; 0 for a
campaign's first page). A chooser scores every eligible offer with
``payout x sigmoid(score)`` and takes the highest; what it earns is the true
value of that offer, on the same requests as the oracle (which scores with the
truth itself). The choosers, each blind to one part:

* **no profile**: each offer's mean P(sale) over the requests it is eligible
  for: what perfect base rates per offer, with no model of the profile, earn;
* **campaign effects averaged**: ``a'_c + g_p(x)``, where ``a'_c`` gives the
  campaign its mean P(sale): the pages' per-profile effects are known, each
  campaign's own profile effects are not;
* **own effects averaged**: ``a''_c + v_c(x) + g_p(x)``, where ``v_c(x)`` is
  the part of ``f_c`` the campaign shares with its vertical (``--shared-structure``)
  and ``a''_c`` gives the campaign its mean P(sale): what a hierarchical
  learner reaches at best for a campaign too thin for a model of its own
  (the vertical's effects known, the campaign's own level; equal to the
  previous chooser in an independent world);
* **page effects averaged**: ``a_c + f_c(x) + mean g_p``: the campaign's
  model is known, each page moves it by the same amount for every profile;
* **first pages only**: ``a_c + f_c(x)``, choosing among first pages only:
  the best a system that ignores pages can do (above the replay's "right
  campaign, first page", which keeps the oracle's campaign even where
  another campaign's first page is worth more).

A learner's replay share of the oracle reads against these: a loop with only
base rates cannot pass "no profile", one without per-profile page effects
cannot pass "page effects averaged". Requests are drawn at random times of
the world's first week (its traffic mix then); ``--requests`` of them per
world, scored in chunks.

    .venv/bin/python benchmarks/learning_ceiling.py [--worlds 0-4] \\
        [--shared-structure 0 0.5] [--requests 20000] [--campaigns 5000] \\
        [--base-rate-min 1e-3 --base-rate-max 3e-2]

``--base-rate-min/--base-rate-max`` set the world's range of campaign rates
(the demo's by default; ``1e-6 1e-3`` are the seed's own). *No profile* is
also the replay's ``single`` baseline (the first eligible offer in one ranking
by average value) up to the sample the ranking is drawn on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.stages import world_config
from clickrouter.errors import InvalidInput
from clickrouter.sim.truth import sigmoid
from clickrouter.sim.world import World

CHUNK = 1000
WEEK_MS = 7 * 86_400_000
CHOOSERS = (
    "no profile",
    "campaign effects averaged",
    "own effects averaged",
    "page effects averaged",
    "first pages only",
)


def requests(world: World, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Vocabulary slots of ``n`` requests at random times of the world's first week."""
    start = int(world.start_ts * 1000)
    ts_ms = np.sort(rng.integers(start, start + WEEK_MS, size=n))
    return world.audience.slots(world.draw_at(rng, ts_ms))


def chunks(slots: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    n = len(slots["country"])
    return [{k: v[lo : lo + CHUNK] for k, v in slots.items()} for lo in range(0, n, CHUNK)]


class Parts:
    """One chunk's truth, split: (n, offers) logits, the campaign part, eligibility."""

    def __init__(self, world: World, slots: dict[str, np.ndarray]) -> None:
        truth = world.truth
        self.logits = truth.logits(slots)  # (n, n_offers)
        self.campaign = np.take(truth.campaign_logits(slots), truth.offer_campaign, axis=1)
        self.page = self.logits - self.campaign  # g_p(x); 0 on first pages
        self.vertical = np.take(truth.vertical_logits(slots), truth.offer_campaign, axis=1)
        self.eligible = world.eligible_slots(slots)


def averages(
    world: World, parts: list[Parts]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per offer: mean P(sale) where eligible, the campaign level giving the campaign
    part its mean P(sale), the level giving the vertical's part plus it the same
    mean, and the mean page effect (in logits)."""
    n_offers = len(world.offers)
    seen = np.zeros(n_offers)
    p_sum, c_sum, g_sum = np.zeros(n_offers), np.zeros(n_offers), np.zeros(n_offers)
    for part in parts:
        e = part.eligible
        seen += e.sum(0)
        p_sum += np.where(e, sigmoid(part.logits), 0.0).sum(0)
        c_sum += np.where(e, sigmoid(part.campaign), 0.0).sum(0)
        g_sum += np.where(e, part.page, 0.0).sum(0)
    count = np.maximum(seen, 1.0)
    mean_c = np.clip(c_sum / count, 1e-12, 1 - 1e-12)
    level = np.log(mean_c / (1 - mean_c))
    return p_sum / count, level, vertical_level(parts, level, mean_c, count), g_sum / count


def vertical_level(
    parts: list[Parts], start: np.ndarray, target: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Per offer, the level ``a`` with mean ``sigmoid(a + v(x))`` over its eligible
    requests equal to ``target`` (Newton steps from ``start``)."""
    level = start.copy()
    for _ in range(6):
        mean, slope = np.zeros_like(level), np.zeros_like(level)
        for part in parts:
            p = np.where(part.eligible, sigmoid(level + part.vertical), 0.0)
            mean += p.sum(0)
            slope += (p * (1 - p)).sum(0)
        step = (target - mean / count) / np.maximum(slope / count, 1e-300)
        level += np.where(slope > 0, step, 0.0)  # an offer no request reached: unused
    return level


def first_pages(world: World) -> np.ndarray:
    """(n_offers,) bool: the offer is its campaign's first page."""
    campaign = world.truth.offer_campaign
    return np.r_[True, campaign[1:] != campaign[:-1]]


def shares(world: World, slots: dict[str, np.ndarray]) -> dict[str, float]:
    parts = [Parts(world, chunk) for chunk in chunks(slots)]
    mean_p, level, own_level, mean_g = averages(world, parts)
    payouts, first = world.payouts, first_pages(world)
    earned = dict.fromkeys(("oracle", *CHOOSERS), 0.0)
    for part in parts:
        value = sigmoid(part.logits) * payouts
        scores = {
            "oracle": value,
            "no profile": np.broadcast_to(mean_p * payouts, value.shape),
            "campaign effects averaged": sigmoid(level + part.page) * payouts,
            "own effects averaged": sigmoid(own_level + part.vertical + part.page) * payouts,
            "page effects averaged": sigmoid(part.campaign + mean_g) * payouts,
            "first pages only": np.where(first, sigmoid(part.campaign) * payouts, -1.0),
        }
        rows = np.arange(len(value))
        for name, score in scores.items():
            chosen = np.where(part.eligible, score, -np.inf).argmax(1)
            served = part.eligible.any(1)
            earned[name] += float(value[rows, chosen][served].sum())
    return {name: earned[name] / earned["oracle"] for name in CHOOSERS}


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=seeds, default=seeds("0-4"), help="world seeds: 0-4")
    parser.add_argument("--shared-structure", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--base-rate-min", type=float, default=DemoConfig.base_rate_min)
    parser.add_argument("--base-rate-max", type=float, default=DemoConfig.base_rate_max)
    args = parser.parse_args()
    rates = f"rates {args.base_rate_min:g}..{args.base_rate_max:g}"
    print(f"{args.campaigns} campaigns, the demo's world knobs, {rates}, {args.requests} requests")
    print("share of the oracle: " + " | ".join(CHOOSERS))
    for shared in args.shared_structure:
        table: dict[str, list[float]] = {name: [] for name in CHOOSERS}
        for seed in args.worlds:
            started = time.perf_counter()
            try:
                demo = DemoConfig(
                    campaigns=args.campaigns,
                    seed=seed,
                    shared_structure=shared,
                    base_rate_min=args.base_rate_min,
                    base_rate_max=args.base_rate_max,
                )
            except InvalidInput as exc:  # names the option and the value
                parser.error(str(exc))
            world = World.generate(demo.campaigns, seed=seed, config=world_config(demo))
            got = shares(world, requests(world, np.random.default_rng([seed, 7]), args.requests))
            for name, value in got.items():
                table[name].append(100 * value)
            row = " | ".join(f"{100 * got[name]:5.1f} %" for name in CHOOSERS)
            print(f"  S={shared:g} world {seed}: {row}  ({time.perf_counter() - started:.0f} s)")
        for label, stat in (("mean", statistics.mean), ("sd", statistics.stdev), ("worst", min)):
            if label == "sd" and len(args.worlds) < 2:
                continue
            row = " | ".join(f"{stat(table[name]):5.1f} %" for name in CHOOSERS)
            print(f"  S={shared:g} {label:>7}: {row}")


if __name__ == "__main__":
    main()
