"""One replay of the learning loop on one traffic seed, in simulated time.

The real objects, called as the service and the trainer call them: a
:class:`TrainingManager` with the demo's settings over a real
:class:`DataManager` dataset and :class:`ModelStore`; each published version
loaded as a :class:`ModelBank` (through the compile cache and its per-file
memo, as the predictor reloads) and decided on by the service's decision path
(:meth:`FusedDecider.decide_many`: the same kernel per request as
``decide``) and its policy object (:func:`choose_many`: the same draws as
``choose_scored`` row by row). What is not real is the wall clock: a cycle
serves its requests in batches, then the records whose labels have settled
are committed and the trainer runs at the cycle's end in simulated time.

The bank's columns are offers, (campaign, landing page) pairs: a choice is an
offer, its record names the campaign and the page (``landing_page_id``), and
its value is the world's truth for that offer.

When the world schedules pages (launched or retired during the run), the
trainer's catalogue is the one to serve at the cycle's end
(:meth:`World.catalogue_at`: pages not live then are inactive), rewritten
before each cycle whose end crosses a change, so the trainer publishes it
with that cycle's models as it would a catalogue an operator edited: the
predictor follows a change at the first cycle from it, not before.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.catalogue import write_catalog
from clickrouter.datastore import DataManager
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.stages import training_settings, world_config
from clickrouter.modelstore import Manifest, ModelStore
from clickrouter.replay.outcomes import PendingRecords, record_columns
from clickrouter.replay.settings import HOUR, ReplaySettings
from clickrouter.replay.traffic import SlotMap, TrafficPlan, canonical_columns
from clickrouter.serving import ModelBank, prune_cache
from clickrouter.serving.engine import (
    Decider,
    LiveBank,
    Policy,
    Thompson,
    choose_many,
    decider_for,
    make_policy,
)
from clickrouter.sim.world import World
from clickrouter.training import TrainingManager, TrainingSettings

CHUNK = 1024  # requests served at once (the outcome draws' batches: fixed, as the streams)
BLOCK = 32  # requests decided at once: (BLOCK x offers) float64 scores, in the core's cache
COMPACT_EVERY = 8  # cycles between compactions of the dataset's small files
Progress = Callable[[int], None]


def load_world(settings: ReplaySettings) -> World:
    if settings.world_dir is not None:
        return World.load(settings.world_dir)
    demo = settings.demo
    return World.generate(demo.campaigns, seed=demo.seed, config=world_config(demo))


def seed_policy(settings: ReplaySettings, traffic_seed: int) -> Policy:
    """The service's policy with the demo's knobs, drawing from a stream of this seed
    (and of the exploration seed, when one is set)."""
    demo = settings.demo
    entropy = [demo.seed, traffic_seed, 3]
    if settings.exploration_seed:  # 0 keeps the stream of replays run before the option
        entropy.append(settings.exploration_seed)
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    policy = make_policy(
        demo.policy,
        demo.epsilon,
        seed=seed,
        thompson_scale=demo.thompson_scale,
        thompson_profile_spread=demo.thompson_profile_spread,
    )
    if isinstance(policy, Thompson):  # the same choices either way (see Thompson)
        policy.estimate_propensity = settings.propensities
    return policy


@dataclass
class Sampled:
    """Per request scored by the oracle: time, offer shown (index into
    ``world.offers``) and each policy's value."""

    ts: list[np.ndarray] = field(default_factory=list)
    shown: list[np.ndarray] = field(default_factory=list)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, ts: np.ndarray, shown: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.ts.append(ts)
        self.shown.append(shown)
        for name, v in values.items():
            self.values.setdefault(name, []).append(v)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        values = {name: np.concatenate(parts) for name, parts in self.values.items()}
        return np.concatenate(self.ts), np.concatenate(self.shown), values


@dataclass
class SeedRun:
    """Everything one seed's report is computed from (all deterministic but ``seconds``)."""

    traffic_seed: int
    edges: np.ndarray  # report bin edges (simulated seconds)
    all_sums: dict[str, np.ndarray]  # per bin: sum of live / greedy value over every request
    all_counts: np.ndarray
    sampled: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]
    campaign_ids: list[str]  # per offer of the world (``sampled``'s shown indexes it)
    page_ids: list[str]  # per offer of the world
    cycles: list[dict[str, Any]]
    no_fill: int
    seconds: dict[str, float]


class ReplayLoop:
    """Serve, log, commit, train, reload: one cycle at a time, in simulated time."""

    def __init__(
        self,
        settings: ReplaySettings,
        world: World,
        workdir: Path,
        traffic_seed: int,
        progress: Progress | None = None,
    ) -> None:
        self.settings, self.world, self.workdir = settings, world, workdir
        self.traffic_seed = traffic_seed
        self.progress = progress or (lambda n: None)
        demo = settings.demo
        world.save(workdir / "world")
        self.scorer = OracleScorer(world)
        self.rank = self.scorer.single_ranking(demo.seed)
        # thrown away after the run: no fsync (a publish stays atomic)
        self.store = ModelStore(workdir / "store", durable=False)
        self.data = DataManager(workdir / "data", writable=True, durable=False)
        trainer_settings = training_settings(demo) | {"attribution_seconds": None}
        if settings.train_window_hours is not None:
            trainer_settings["window_seconds"] = settings.train_window_hours * HOUR
        self.catalogue = workdir / "catalogue.json"  # what the trainer publishes
        self._epoch = self._write_catalogue(world.start_ts, None)
        self.trainer = TrainingManager(
            self.data, self.store, self.catalogue, TrainingSettings(**trainer_settings)
        )
        self.pending = PendingRecords(self.data)
        self.policy = seed_policy(settings, traffic_seed)
        self.traffic_rng = np.random.default_rng([demo.seed, traffic_seed, 1])
        self.outcome_rng = np.random.default_rng([demo.seed, traffic_seed, 2])
        start = world.start_ts
        span = settings.days * 86400.0
        cycle_edges = np.minimum(
            start + np.arange(settings.cycles + 1) * demo.retrain_hours * HOUR, start + span
        )
        self.plan = TrafficPlan(world, start, cycle_edges, settings.total_clicks, settings.traffic)
        self.bin_edges = np.linspace(start, start + span, settings.bins + 1)
        sample = settings.oracle_sample or settings.total_clicks  # 0: every request
        self.stride = max(1, settings.total_clicks // sample)  # every stride-th request
        offers = world.offers
        self.offer_campaigns = np.array([o.campaign.id for o in offers], dtype=object)
        self.offer_pages = np.array([o.page.id for o in offers], dtype=object)
        self.all_sums = {k: np.zeros(settings.bins) for k in ("live", "greedy")}
        self.all_counts = np.zeros(settings.bins, dtype=np.int64)
        self.sampled = Sampled()
        self.served = 0
        self.no_fill = 0
        self.cycles: list[dict[str, Any]] = []
        self.seconds = dict.fromkeys(("serve", "oracle", "commit", "train", "load"), 0.0)
        self._live: tuple[LiveBank, Decider, SlotMap, np.ndarray] | None = None
        # per world offer: its campaign's served model rests on records (the oracle
        # among these is how much the campaigns exploration has reached are worth)
        self._reached = np.zeros(len(offers), dtype=bool)
        self._versions: dict[str, int] = {}

    def run(self) -> SeedRun:
        self.trainer.publish_cold_start()
        edges = self.plan.edges
        for index in range(len(edges) - 1):
            live = self._timed("load", self._load)
            self._serve_cycle(index, live)
            now = float(edges[index + 1])
            committed = self._timed("commit", self.pending.commit_until, now)
            if (index + 1) % COMPACT_EVERY == 0:
                self._timed("commit", self.data.compact)
            self._epoch = self._write_catalogue(now, self._epoch)
            report = self._timed("train", self.trainer.run_cycle, now)
            self.cycles.append(self._cycle_row(index, now, committed, report))
        if self._live is not None:
            self._live[0].bank.close()
        self.data.close()
        return SeedRun(
            self.traffic_seed,
            self.bin_edges,
            self.all_sums,
            self.all_counts,
            self.sampled.arrays(),
            self.offer_campaigns.tolist(),
            self.offer_pages.tolist(),
            self.cycles,
            self.no_fill,
            self.seconds,
        )

    def _write_catalogue(self, ts: float, written: int | None) -> int:
        """Write the catalogue live at ``ts`` unless the schedule has not moved since
        ``written`` (its epoch); return the epoch written."""
        epoch = int(self.world.live_epoch(np.array([ts]))[0])
        if epoch != written:
            write_catalog(self.catalogue, self.world.catalogue_at(ts))
        return epoch

    def _timed(self, stage: str, call: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def _load(self) -> tuple[LiveBank, Decider, SlotMap, np.ndarray]:
        """The live version's bank, as the predictor reloads it (compile cache + memo)."""
        version = self.store.current()
        if self._live is not None and self._live[0].store_version == version:
            return self._live
        assert version is not None  # the cold start published one
        if self._live is not None:
            self._live[0].bank.close()
        directory = self.store.path_of(version)
        cache = self.workdir / "bank-cache"
        bank = ModelBank.from_directory(directory, cache_dir=cache)
        prune_cache(cache, keep=2)
        manifest = self.store.read(version) or Manifest()
        live = LiveBank(bank, directory, version, 0.0, 0.0, manifest)
        # bank column -> the world's offer index (the store's catalogue is the world's)
        to_catalogue = self.world.offer_index(bank.campaign_ids, bank.page_ids)
        if (to_catalogue < 0).any():
            raise ValueError(f"version {version} serves offers the replayed world does not have")
        self._live = (live, decider_for(bank), SlotMap(self.world, bank.space), to_catalogue)
        reached = [c for c, r in manifest.campaigns.items() if r.data_version is not None]
        self._reached = np.isin(self.offer_campaigns, reached)
        return self._live

    def _serve_cycle(self, index: int, loaded: tuple[LiveBank, Decider, SlotMap, Any]) -> None:
        draw = self.plan.draw(self.traffic_rng, index)
        slots = self.world.audience.slots(draw)
        for lo in range(0, len(draw), CHUNK):
            part = {name: column[lo : lo + CHUNK] for name, column in slots.items()}
            ts = draw.ts_ms[lo : lo + CHUNK] / 1000.0
            self._serve_chunk(loaded, part, ts)

    def _serve_chunk(
        self,
        loaded: tuple[LiveBank, Decider, SlotMap, np.ndarray],
        slots: dict[str, np.ndarray],
        ts: np.ndarray,
    ) -> None:
        live, decider, slot_map, to_catalogue = loaded
        started = time.perf_counter()
        bank_slots = slot_map.bank_slots(slots)
        columns, propensity, best, filled = self._choose(live, decider, bank_slots, slots)
        self.no_fill += int((~filled).sum())
        if not filled.all():
            slots = {name: column[filled] for name, column in slots.items()}
            ts = ts[filled]
        chosen = to_catalogue[columns]
        greedy = to_catalogue[best]
        world = self.world
        p_true = world.true_proba_slots(slots, chosen)
        value = p_true * world.payouts[chosen]
        greedy_value = world.true_proba_slots(slots, greedy) * world.payouts[greedy]
        self._log(slots, ts, chosen, p_true, propensity, str(live.store_version))
        self.seconds["serve"] += time.perf_counter() - started
        self._timed("oracle", self._score, ts, chosen, value, greedy_value, slots)
        self.served += len(ts) + int((~filled).sum())
        self.progress(self.served)

    def _choose(
        self,
        live: LiveBank,
        decider: Decider,
        bank_slots: np.ndarray,
        slots: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(column shown, propensity, greedy column) per filled request, and which were.

        Decided and chosen ``BLOCK`` requests at a time: the policy reads each
        request's (offers,) scores right after the bank wrote them, while they
        are in the core's cache, instead of a whole chunk's from memory. The
        rows are independent and the policy draws in row order, so the choices
        are those of the whole chunk at once.
        """
        parts = []
        for lo in range(0, len(bank_slots), BLOCK):
            block = {name: column[lo : lo + BLOCK] for name, column in slots.items()}
            batch = decider.decide_many(bank_slots[lo : lo + BLOCK], partial(self._profiles, block))
            filled = batch.n_eligible > 0
            if not filled.all():
                batch = type(batch)(*(a[filled] for a in batch))
            parts.append((*choose_many(self.policy, live, *batch), batch.best, filled))
        columns, propensity, best, filled = (np.concatenate(a) for a in zip(*parts, strict=True))
        return columns, propensity, best, filled

    def _profiles(self, slots: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        columns = canonical_columns(self.world, slots)
        n = len(slots["country"])
        return [{name: column[i] for name, column in columns.items()} for i in range(n)]

    def _log(
        self,
        slots: dict[str, np.ndarray],
        ts: np.ndarray,
        chosen: np.ndarray,
        p_true: np.ndarray,
        propensity: np.ndarray,
        version: str,
    ) -> None:
        """Draw each click's sale and delay; queue its record for when its label settles."""
        rng, world = self.outcome_rng, self.world
        window = self.settings.demo.attribution_hours * HOUR
        sale = rng.random(len(ts)) < p_true
        delay = world.delays.sample(rng, len(ts))
        label = sale & (delay <= window)
        sale_ts = np.where(label, ts + delay, np.nan)
        first = self.served
        click_ids = np.char.add("c", np.arange(first, first + len(ts)).astype(str))
        columns = record_columns(
            click_ids,
            self.offer_campaigns[chosen],
            self.offer_pages[chosen],
            ts,
            canonical_columns(world, slots),
            label.astype(np.int8),
            np.where(label, world.payouts[chosen], 0.0),
            sale_ts,
            propensity,
            version,
        )
        settled = np.where(label, sale_ts, ts + window)
        self.pending.add(columns, settled + self.settings.label_delay_hours * HOUR)

    def _score(
        self,
        ts: np.ndarray,
        chosen: np.ndarray,
        value: np.ndarray,
        greedy_value: np.ndarray,
        slots: dict[str, np.ndarray],
    ) -> None:
        """Per-bin sums over every request; the baselines on the evenly spaced sample."""
        which = np.clip(
            np.searchsorted(self.bin_edges, ts, side="right") - 1, 0, len(self.all_counts) - 1
        )
        bins = len(self.all_counts)
        self.all_sums["live"] += np.bincount(which, weights=value, minlength=bins)
        self.all_sums["greedy"] += np.bincount(which, weights=greedy_value, minlength=bins)
        self.all_counts += np.bincount(which, minlength=bins)
        first = self.served  # global index of this chunk's first served request
        offset = (-first) % self.stride
        rows = np.arange(offset, len(ts), self.stride)
        if not len(rows):
            return
        sample = {name: column[rows] for name, column in slots.items()}
        # the oracle's baselines on world slots (the demo values logged profiles)
        baselines = self.scorer.baseline_values(sample, ts[rows], self.rank, self._reached)
        self.sampled.add(
            ts[rows],
            chosen[rows],
            {"live": value[rows], "greedy": greedy_value[rows], **baselines},
        )

    def _ordinal(self, version: str | None) -> int | None:
        if version is None:
            return None
        return self._versions.setdefault(version, len(self._versions))

    def _cycle_row(self, index: int, now: float, committed: int, report: Any) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        with_records = 0  # how far exploration has reached: models fitted on records
        if self._live is not None:
            for record in self._live[0].manifest.campaigns.values():
                kind = str(record.kind)
                kinds[kind] = kinds.get(kind, 0) + 1
                with_records += record.data_version is not None
        return {
            "cycle": index,
            "sim_ts": now,
            # versions are named by wall clock: the report numbers them (0 = the cold start)
            "served_version": self._ordinal(self._live[0].store_version if self._live else None),
            "model_kinds": kinds,
            "campaigns_with_records": with_records,
            "records_committed": committed,
            "trained": getattr(report, "trained", None),
            "published": bool(getattr(report, "published", False)),
        }


def run_seed(
    settings: ReplaySettings,
    traffic_seed: int,
    workdir: Path,
    progress: Progress | None = None,
    world: World | None = None,
) -> SeedRun:
    """One seed's replay in ``workdir`` (emptied first, removed after)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        world = world or load_world(settings)
        return ReplayLoop(settings, world, workdir, traffic_seed, progress).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
