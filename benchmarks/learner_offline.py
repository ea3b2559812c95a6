"""Learners on the same data: what the greedy choice on each one's models earns.

A replay's live loop mixes two things: how good the models are and what
data the exploration collected. This benchmark holds the data fixed: it runs
one replay with the demo's defaults (``--days`` simulated days, traffic seed
``--seed``), keeps its dataset, then fits every candidate learner on that
dataset at the replay's end (a fresh store each: every campaign is fitted)
and scores the greedy choice of each one's bank (highest P(sale) x payout
among eligible offers, the replay's "greedy on the same models") on the
same fresh requests, as a share of the oracle's revenue on them. The
replay's own final models are the first row (``replay``).

    .venv/bin/python benchmarks/learner_offline.py [--days 3] [--seed 0] \\
        [--shared-structure 0.5] [--requests 20000] \\
        [--candidate NAME:KEY=VALUE,KEY=VALUE ...]

A candidate's keys are :class:`TrainingSettings` fields over the demo's, e.g.
``hier:learner=hierarchical`` or ``hier2:learner=hierarchical,hierarchy_min_positives=2``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.datastore import DataManager
from clickrouter.demo.config import DemoConfig
from clickrouter.demo.stages import training_settings
from clickrouter.modelstore import ModelStore
from clickrouter.replay.loop import ReplayLoop, load_world
from clickrouter.replay.settings import ReplaySettings
from clickrouter.replay.traffic import SlotMap, canonical_columns
from clickrouter.serving import ModelBank
from clickrouter.serving.engine import decider_for
from clickrouter.sim.truth import sigmoid
from clickrouter.sim.world import World
from clickrouter.training import TrainingManager, TrainingSettings

CHUNK = 1000
DEFAULT_CANDIDATES = (
    "independent:",
    "hierarchical:learner=hierarchical",
    "hierarchical-2:learner=hierarchical,hierarchy_min_positives=2",
)


def candidate(text: str) -> tuple[str, dict[str, Any]]:
    name, _, pairs = text.partition(":")
    overrides = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition("=")
        overrides[key] = json.loads(value) if value[:1].isdigit() else value
    return name, overrides


def fresh_requests(world: World, seed: int, n: int, end: float) -> dict[str, np.ndarray]:
    """World slots of ``n`` requests in the day after ``end`` (the replay's last)."""
    rng = np.random.default_rng([seed, 11])
    ts_ms = np.sort(rng.integers(int(end * 1000), int((end + 86400) * 1000), size=n))
    return world.audience.slots(world.draw_at(rng, ts_ms))


def oracle_value(world: World, slots: dict[str, np.ndarray]) -> float:
    total = 0.0
    n = len(slots["country"])
    for lo in range(0, n, CHUNK):
        part = {k: v[lo : lo + CHUNK] for k, v in slots.items()}
        value = sigmoid(world.truth.logits(part)) * world.payouts
        total += float(np.where(world.eligible_slots(part), value, -np.inf).max(1).sum())
    return total


def greedy_value(world: World, store: ModelStore, slots: dict[str, np.ndarray]) -> float:
    """True revenue of the greedy choice of the store's live bank on ``slots``."""
    with ModelBank.from_directory(store.path_of(store.current())) as bank:
        to_world = world.offer_index(bank.campaign_ids, bank.page_ids)
        bank_slots = SlotMap(world, bank.space).bank_slots(slots)
        columns = canonical_columns(world, slots)
        n = len(slots["country"])

        def profiles() -> list[dict[str, Any]]:
            return [{k: v[i] for k, v in columns.items()} for i in range(n)]

        batch = decider_for(bank).decide_many(bank_slots, profiles)
        served = batch.n_eligible > 0
        chosen = to_world[batch.best[served]]
        shown = {k: v[served] for k, v in slots.items()}
        return float((world.true_proba_slots(shown, chosen) * world.payouts[chosen]).sum())


def kinds(store: ModelStore) -> str:
    counts: dict[str, int] = {}
    for record in store.manifest(store.current()).get("campaigns", {}).values():
        counts[str(record.get("kind"))] = counts.get(str(record.get("kind")), 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0, help="traffic seed of the replay")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--shared-structure", type=float, default=0.0)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--candidate", type=candidate, nargs="+", default=None)
    args = parser.parse_args()
    candidates = args.candidate or [candidate(c) for c in DEFAULT_CANDIDATES]
    demo = DemoConfig(
        campaigns=args.campaigns, seed=args.world_seed, shared_structure=args.shared_structure
    )
    settings = ReplaySettings(demo=demo, days=args.days, propensities=False)  # unread here
    world = load_world(settings)
    with tempfile.TemporaryDirectory(prefix="learner-offline-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        run = ReplayLoop(settings, world, workdir / "replay", args.seed).run()
        end = float(run.cycles[-1]["sim_ts"])
        print(f"replay: {settings.total_clicks:,} clicks, {time.perf_counter() - started:.0f} s")
        slots = fresh_requests(world, args.seed, args.requests, end)
        oracle = oracle_value(world, slots)
        replay_store = ModelStore(workdir / "replay" / "store")
        share = greedy_value(world, replay_store, slots) / oracle
        print(f"  {'replay':<16} {100 * share:5.1f} %  ({kinds(replay_store)})")
        for name, overrides in candidates:
            started = time.perf_counter()
            fields = training_settings(demo) | {"attribution_seconds": None} | overrides
            store = ModelStore(workdir / f"store-{name}", durable=False)
            data = DataManager(workdir / "replay" / "data")
            manager = TrainingManager(
                data, store, workdir / "replay" / "catalogue.json", TrainingSettings(**fields)
            )
            manager.publish_cold_start()
            manager.run_cycle(end)
            share = greedy_value(world, store, slots) / oracle
            took = time.perf_counter() - started
            print(f"  {name:<16} {100 * share:5.1f} %  ({kinds(store)}; {took:.0f} s)")


if __name__ == "__main__":
    main()
