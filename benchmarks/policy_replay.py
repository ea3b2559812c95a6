"""Offline replay of the demo's learning loop, without HTTP, processes or Parquet.

The real World (traffic, hidden truth, sale delays), the real TrainingManager
(over an in-memory TrainingData), ModelStore, ModelBank and the service's own
policy object, called once per request exactly as the predictor calls it.
What is left out is wall-clock time: the demo's requests are spread over its
simulated span, a training cycle runs at the end of every ``retrain_hours``
batch on the clicks older than ``label_delay_hours`` (the attribution window
plus the consumer's hold), and the next batch is served by the new version.

So a policy can be judged in a few minutes, on any machine load, with the
same traffic for every candidate (``traffic_seed``), against the baselines
the demo reports: uniform random, the best single campaign and the oracle,
all computed from the truth on the same requests.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.stages import training_settings, world_config
from clickrouter.modelstore import ModelStore
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.http.models import LiveBank
from clickrouter.serving.http.policy import Policy
from clickrouter.sim.world import World
from clickrouter.training import TrainingManager, TrainingSettings

HOUR = 3600.0
PROFILE_FIELDS = ("country", "device", "os", "browser", "provider")


class MemoryTrainingData:
    """The TrainingData protocol over record frames kept in memory (``ts``: click time)."""

    def __init__(self) -> None:
        self._frame = pd.DataFrame()
        self._versions: dict[str, str] = {}
        self._generation = 0

    def add(self, frame: pd.DataFrame) -> None:
        self._generation += 1
        self._frame = pd.concat([self._frame, frame], ignore_index=True)
        for campaign_id in frame["campaign_id"].unique():
            self._versions[str(campaign_id)] = f"g{self._generation}"

    def campaigns(self) -> list[str]:
        return sorted(self._versions)

    def data_version(self, campaign_id: str) -> str:
        return self._versions[campaign_id]

    def read_all(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        ts = self._frame["ts"].to_numpy()
        keep = np.ones(len(ts), dtype=bool)
        if start is not None:
            keep &= ts >= start
        if end is not None:
            keep &= ts < end
        return self._frame[keep].reset_index(drop=True)

    def read_training_set(self, campaign_id: str, start: Any = None, end: Any = None) -> Any:
        frame = self.read_all(start, end)
        return frame[frame["campaign_id"] == campaign_id].reset_index(drop=True)


@dataclass(frozen=True)
class ReplayConfig:
    demo: DemoConfig = field(default_factory=DemoConfig)
    requests: int = 430_000  # what the default demo serves in its 6 minutes
    days: float = 3.0  # its simulated span (6 min x 720)
    label_delay_hours: float = 2.2
    traffic_seed: int = 0
    # the demo's drivers send at a constant rate, one request per send slot
    # stamped with the slot's simulated time: flat over the day, not diurnal
    flat_traffic: bool = False


@dataclass
class BatchResult:
    """Revenue per 1,000 clicks of one batch: the policy's and the baselines'."""

    live: float
    greedy: float  # what the greedy choice on the same models would have earned
    random: float
    single: float
    oracle: float
    logistic_models: int
    distinct_shown: int


@dataclass
class ReplayResult:
    batches: list[BatchResult]
    seconds: dict[str, float]

    def final_quarter(self) -> dict[str, float]:
        tail = self.batches[-max(1, len(self.batches) // 4) :]
        names = ("live", "greedy", "random", "single", "oracle")
        return {name: float(np.mean([getattr(b, name) for b in tail])) for name in names}


def replay(
    config: ReplayConfig, policy: Policy, on_batch: Callable[[int, BatchResult], None]
) -> ReplayResult:
    """Serve ``config.requests`` requests with ``policy``, retraining between batches."""
    demo = config.demo
    world = World.generate(demo.campaigns, seed=demo.seed, config=world_config(demo))
    scratch = Path(tempfile.mkdtemp(prefix="policy-replay-"))
    try:
        return _Loop(config, world, scratch, policy, on_batch).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Loop:
    def __init__(
        self,
        config: ReplayConfig,
        world: World,
        scratch: Path,
        policy: Policy,
        on_batch: Callable[[int, BatchResult], None],
    ) -> None:
        self.config, self.world, self.scratch = config, world, scratch
        self.policy, self.on_batch = policy, on_batch
        world.save(scratch / "world")
        self.scorer = OracleScorer(world)
        self.rank = self.scorer.single_ranking(config.demo.seed)
        self.store = ModelStore(scratch / "store")
        settings = TrainingSettings(**training_settings(config.demo))
        self.data = MemoryTrainingData()
        self.trainer = TrainingManager(
            self.data, self.store, scratch / "world" / "campaigns.json", settings
        )
        self.rng = np.random.default_rng(config.demo.seed + 17 + 1000 * config.traffic_seed)
        self.pending: list[pd.DataFrame] = []
        self.live: LiveBank | None = None
        self.seconds = {"train": 0.0, "load": 0.0, "decide": 0.0, "baselines": 0.0}

    def run(self) -> ReplayResult:
        self.trainer.publish_cold_start()
        batch_seconds = self.config.demo.retrain_hours * HOUR
        n_batches = max(1, round(self.config.days * 86400.0 / batch_seconds))
        per_batch = self.config.requests // n_batches
        start = self.world.start_ts
        results = []
        for index in range(n_batches):
            lo, hi = start + index * batch_seconds, start + (index + 1) * batch_seconds
            clock = time.perf_counter()
            live = self._load(self.store.current())
            self.seconds["load"] += time.perf_counter() - clock
            result = self._serve(index, live, per_batch, lo, hi)
            clock = time.perf_counter()
            self._train(cutoff=hi - self.config.label_delay_hours * HOUR)
            self.seconds["train"] += time.perf_counter() - clock
            results.append(result)
            self.on_batch(index, result)
        if self.live is not None:
            self.live.bank.close()
        return ReplayResult(results, self.seconds)

    def _load(self, version: str | None) -> LiveBank:
        if self.live is None or self.live.store_version != version:
            if self.live is not None:
                self.live.bank.close()
            assert version is not None
            directory = self.store.path_of(version)
            bank = ModelBank.from_directory(directory, cache_dir=self.scratch / "cache")
            manifest = json.loads((directory / "manifest.json").read_text())
            self.live = LiveBank(bank, directory, version, 0.0, 0.0, manifest)
        return self.live

    def _serve(self, index: int, live: LiveBank, n: int, lo: float, hi: float) -> BatchResult:
        world = self.world
        draw = _draw(world, self.rng, n, lo, hi, flat=self.config.flat_traffic)
        slots = world.audience.slots(draw)
        canon = world.renderer.canonical_columns(draw)
        profiles = [
            dict(zip(canon, values, strict=True)) for values in zip(*canon.values(), strict=True)
        ]
        clock = time.perf_counter()
        chosen, propensity, greedy = self._decide(live, profiles, slots)
        self.seconds["decide"] += time.perf_counter() - clock
        clock = time.perf_counter()
        p_true = world.true_proba_slots(slots, chosen)
        p_greedy = world.true_proba_slots(slots, greedy)
        baselines = _baselines(self.scorer, slots, self.rank)
        self.seconds["baselines"] += time.perf_counter() - clock
        self._log_clicks(index, draw, canon, chosen, p_true, propensity, live.store_version)
        kinds = [r.get("kind") for r in live.manifest.get("campaigns", {}).values()]
        return BatchResult(
            live=1000 * float(np.mean(p_true * world.payouts[chosen])),
            greedy=1000 * float(np.mean(p_greedy * world.payouts[greedy])),
            random=1000 * float(baselines["random"].mean()),
            single=1000 * float(baselines["single"].mean()),
            oracle=1000 * float(baselines["oracle"].mean()),
            logistic_models=kinds.count("logistic"),
            distinct_shown=len(np.unique(chosen)),
        )

    def _decide(
        self, live: LiveBank, profiles: list[dict[str, Any]], slots: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The service's steps per request: bank scores, eligibility, greedy column, policy.

        Returns the chosen campaigns, their propensities and the greedy campaigns
        (catalogue indices), so exploration's cost can be told from the models'.
        """
        bank = live.bank
        # the policy works in bank columns; the world in catalogue order
        to_catalogue = np.array([self.world.campaign_index[c] for c in bank.campaign_ids])
        proba = bank.predict_proba(profiles)
        eligible = self.world.eligible_slots(slots)[:, to_catalogue]
        best = np.where(eligible, proba * self.world.payouts[to_catalogue], -1.0).argmax(axis=1)
        n_eligible = eligible.sum(axis=1)
        chosen = np.empty(len(profiles), dtype=np.int64)
        propensity = np.empty(len(profiles))
        for row in range(len(profiles)):
            choice = self.policy.choose_scored(
                live, proba[row], eligible[row], int(best[row]), int(n_eligible[row])
            )
            chosen[row] = to_catalogue[choice.column]
            propensity[row] = choice.propensity
        return chosen, propensity, to_catalogue[best]

    def _log_clicks(
        self,
        index: int,
        draw: Any,
        canon: dict[str, Any],
        chosen: np.ndarray,
        p_true: np.ndarray,
        propensity: np.ndarray,
        version: str | None,
    ) -> None:
        world, demo = self.world, self.config.demo
        sale = self.rng.random(len(chosen)) < p_true
        delay = world.delays.sample(self.rng, len(chosen))
        label = (sale & (delay <= demo.attribution_hours * HOUR)).astype(np.int8)
        ts = draw.ts_ms / 1000.0
        payouts = world.payouts[chosen]
        self.pending.append(
            pd.DataFrame(
                {
                    "click_id": [f"k{index}-{i}" for i in range(len(chosen))],
                    "campaign_id": np.array(world.campaign_ids, dtype=object)[chosen],
                    "ts": ts,
                    **{name: canon[name] for name in PROFILE_FIELDS},
                    "local_hour": np.asarray(canon["local_hour"], np.int8),
                    "local_weekday": np.asarray(canon["local_weekday"], np.int8),
                    "label": label,
                    "revenue": np.where(label == 1, payouts, 0.0),
                    "sale_ts": np.where(label == 1, ts + delay, np.nan),
                    "propensity": propensity,
                    "model_version": version,
                }
            )
        )

    def _train(self, cutoff: float) -> None:
        """Hand the clicks whose label is settled by ``cutoff`` to the trainer, run a cycle."""
        frames = pd.concat(self.pending, ignore_index=True)
        settled = frames["ts"].to_numpy() < cutoff
        self.pending = [frames[~settled]]
        if settled.any():
            self.data.add(frames[settled].reset_index(drop=True))
        if self.data.campaigns():
            self.trainer.run_cycle(now=cutoff)


def _draw(
    world: World, rng: np.random.Generator, n: int, lo: float, hi: float, *, flat: bool
) -> Any:
    """``n`` requests in [lo, hi) following the traffic's intensity (or evenly), in time order."""
    if flat:
        ts_ms = (np.linspace(lo, hi, n, endpoint=False) * 1000).astype(np.int64)
        return world.draw_at(rng, ts_ms)
    ts = np.sort(rng.uniform(lo, hi, 4 * n))
    ts_ms = (ts * 1000).astype(np.int64)
    keep = rng.random(len(ts)) * world.timeline.max_intensity < world.timeline.intensity(ts_ms)
    return world.draw_at(rng, ts_ms[keep][:n])


def _baselines(
    scorer: OracleScorer, slots: dict[str, np.ndarray], rank: np.ndarray, chunk: int = 1024
) -> dict[str, np.ndarray]:
    """Expected value per request of random, best-single and oracle choices (truth)."""
    n = len(slots["country"])
    out = {name: np.zeros(n) for name in ("random", "single", "oracle")}
    for lo in range(0, n, chunk):
        values, eligible = scorer.chunk_values({f: v[lo : lo + chunk] for f, v in slots.items()})
        m = len(values)
        masked = np.where(eligible, values, 0.0)
        out["random"][lo : lo + m] = masked.sum(axis=1) / np.maximum(eligible.sum(axis=1), 1)
        out["oracle"][lo : lo + m] = masked.max(axis=1)
        first = np.where(eligible, rank[None, :], len(rank)).argmin(axis=1)
        out["single"][lo : lo + m] = values[np.arange(m), first]
    return out
