"""World: the synthetic ad network with its hidden truth, and the oracle API.

A world is generated from ``(WorldConfig, seed, n_campaigns)`` and saved as a
directory holding the campaign catalogue (``campaigns.json``, the model
directory format the predictor serves) and the hidden truth (``world.json``:
config, audience tables, conversion effects). Everything else (timeline,
samplers, dense effect tables) is rebuilt from those two files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.catalogue import Campaign, load_catalog, write_catalog
from clickrouter.errors import InvalidInput
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_DOMAINS, parse_timestamp
from clickrouter.sim.campaigns import build_campaigns
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.delays import DelayModel
from clickrouter.sim.population import Audience, Draw, Population
from clickrouter.sim.requests import RequestRenderer
from clickrouter.sim.timeline import Timeline
from clickrouter.sim.truth import Truth, TruthSpec, generate_truth, sigmoid

FORMAT_VERSION = 1
WORLD_FILE = "world.json"
CATALOG_FILE = "campaigns.json"
_CALIBRATION_ROWS = 10_000


class WorldFile(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    seed: int
    config: WorldConfig
    population: Population
    truth: TruthSpec


class World:
    """Traffic, campaigns and the true P(sale) of every (profile, campaign) pair."""

    def __init__(
        self,
        config: WorldConfig,
        seed: int,
        population: Population,
        campaigns: list[Campaign],
        truth: TruthSpec | None = None,
    ) -> None:
        self.config = config.validated()
        self.seed = seed
        self.population = population
        self.campaigns = campaigns
        self.campaign_ids = [c.id for c in campaigns]
        self.campaign_index = {cid: i for i, cid in enumerate(self.campaign_ids)}
        self.payouts = np.array([c.payout for c in campaigns])
        self.audience = Audience(population, self.config)
        self.timeline = Timeline(population.zones, np.array(population.zone_p), self.config)
        self.renderer = RequestRenderer(self.audience)
        self.delays = DelayModel(self.config.delays)
        self.start_ts = parse_timestamp(self.config.start)
        self._slot_index = {f: self.audience.vocabulary.index(f) for f in CATEGORICAL_FIELDS}
        self._eligibility_tables()
        if truth is None:
            truth = self._draw_truth()
        self.truth = Truth(truth, self.sizes)

    @property
    def sizes(self) -> dict[str, int]:
        """Vocabulary size per canonical field (numeric fields: their domain)."""
        sizes = {f: len(v) for f, v in self.audience.vocabulary.values.items()}
        return sizes | dict(NUMERIC_DOMAINS)

    @classmethod
    def generate(
        cls, n_campaigns: int = 5000, seed: int = 0, config: WorldConfig | None = None
    ) -> World:
        """A new world; identical for identical arguments."""
        if n_campaigns < 1:
            raise InvalidInput(f"n_campaigns must be >= 1, got {n_campaigns}")
        config = (config or WorldConfig()).validated()
        rng = np.random.default_rng([seed, 1])
        population = Population.build(rng, config)
        campaigns = build_campaigns(rng, n_campaigns, population, config)
        return cls(config, seed, population, campaigns)

    def _draw_truth(self) -> TruthSpec:
        rng = np.random.default_rng([self.seed, 2])
        sample = self.audience.slots(self.draw_spread(rng, _CALIBRATION_ROWS))
        eligible = self.eligible_slots(sample)
        return generate_truth(rng, self.config, sample, eligible, self.sizes)

    # ---- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``campaigns.json`` and ``world.json`` into ``directory``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        write_catalog(root / CATALOG_FILE, self.campaigns)
        document = WorldFile(
            FORMAT_VERSION, self.seed, self.config, self.population, self.truth.spec
        )
        (root / WORLD_FILE).write_bytes(msgspec.json.encode(document))
        return root

    @classmethod
    def load(cls, directory: str | Path) -> World:
        """The world saved in ``directory`` (raises InvalidInput naming the problem)."""
        root = Path(directory)
        try:
            document = msgspec.json.decode((root / WORLD_FILE).read_bytes(), type=WorldFile)
        except OSError as exc:
            raise InvalidInput(f"{root / WORLD_FILE}: cannot read world: {exc.strerror}") from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{root / WORLD_FILE}: not a world file: {exc}") from None
        campaigns, problems = load_catalog(root / CATALOG_FILE)
        if problems or len(campaigns) != len(document.truth.intercept):
            raise InvalidInput(f"{root / CATALOG_FILE}: does not match {WORLD_FILE}: {problems}")
        return cls(document.config, document.seed, document.population, campaigns, document.truth)

    # ---- traffic -----------------------------------------------------------------------

    def draw(self, rng: np.random.Generator, n: int, start_ts: float | None = None) -> Draw:
        """The next ``n`` requests of the arrival process from ``start_ts`` (columns)."""
        start = self.start_ts if start_ts is None else start_ts
        ts_ms, zone, offset = self.timeline.arrivals(rng, n, start)
        return self.audience.draw(rng, ts_ms, zone, offset)

    def draw_at(self, rng: np.random.Generator, ts_ms: np.ndarray) -> Draw:
        """One request at each given time (ms), from that moment's traffic mix."""
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        zone, offset = self.timeline.zones_at(rng, ts_ms)
        return self.audience.draw(rng, ts_ms, zone, offset)

    def draw_spread(self, rng: np.random.Generator, n: int, days: float = 7.0) -> Draw:
        """``n`` requests spread over ``days`` from the start, distributed like the traffic.

        The arrival process thinned to ``n`` points: uniform times accepted with
        probability proportional to the traffic intensity at that time, so both
        the time of day and the zone mix match what :meth:`draw` produces over
        the same span (time order is not kept).
        """
        span_ms = int(days * 86_400_000)
        start_ms = int(self.start_ts * 1000)
        kept: list[np.ndarray] = []
        while sum(len(k) for k in kept) < n:
            ts = start_ms + rng.integers(0, span_ms, 2 * n)
            intensity = self.timeline.intensity(ts)
            kept.append(ts[rng.random(len(ts)) * self.timeline.max_intensity < intensity])
        return self.draw_at(rng, np.concatenate(kept)[:n])

    def render(
        self, rng: np.random.Generator, draw: Draw, click_ids: list[str] | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(raw request, canonical profile) pairs for drawn requests."""
        raw_cols = self.renderer.raw_columns(rng, draw)
        canon_cols = self.renderer.canonical_columns(draw)
        out = []
        for i in range(len(draw)):
            raw = {k: v[i] for k, v in raw_cols.items() if v[i] is not None}
            if click_ids is not None:
                raw["click_id"] = click_ids[i]
            out.append((raw, {k: v[i] for k, v in canon_cols.items()}))
        return out

    def sample_requests(
        self, rng: np.random.Generator, n: int, start_ts: float | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``n`` requests from ``start_ts`` on: (raw request, canonical profile) pairs."""
        return self.render(rng, self.draw(rng, n, start_ts))

    # ---- oracle ------------------------------------------------------------------------

    def slots_of(self, profiles: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Vocabulary indices of canonical profiles (values the world lacks -> 0)."""
        slots = {
            f: np.array([index.get(str(p.get(f)), 0) for p in profiles], dtype=np.int64)
            for f, index in self._slot_index.items()
        }
        for f, size in NUMERIC_DOMAINS.items():
            values = np.array([p.get(f, 0) for p in profiles], dtype=np.int64)
            slots[f] = np.clip(values, 0, size - 1)
        return slots

    def true_proba(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """True P(sale) for every campaign; shape (n_profiles, n_campaigns), catalogue order.

        Defined for every campaign, eligible or not (see :meth:`eligible`).
        """
        return sigmoid(self.truth.logits(self.slots_of(profiles)))

    def true_proba_slots(self, slots: dict[str, np.ndarray], campaign: np.ndarray) -> np.ndarray:
        """True P(sale) of one campaign (index) per row of vocabulary slots; shape (n,)."""
        return sigmoid(self.truth.logits_for(slots, campaign))

    def eligible(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """Active campaigns whose targeting admits each profile; (n_profiles, n_campaigns)."""
        return self.eligible_slots(self.slots_of(profiles))

    def eligible_slots(self, slots: dict[str, np.ndarray]) -> np.ndarray:
        return self.active & self.country_ok[slots["country"]] & self.os_ok[slots["os"]]

    def _eligibility_tables(self) -> None:
        vocab = self.audience.vocabulary.values
        self.active = np.array([c.active for c in self.campaigns], dtype=bool)
        self.country_ok = np.ones((len(vocab["country"]), len(self.campaigns)), dtype=bool)
        self.os_ok = np.ones((len(vocab["os"]), len(self.campaigns)), dtype=bool)
        for j, campaign in enumerate(self.campaigns):
            rules = campaign.rules()
            if "country" in rules:
                self.country_ok[:, j] = [rules["country"].admits(v) for v in vocab["country"]]
            if "os" in rules:
                self.os_ok[:, j] = [rules["os"].admits(v) for v in vocab["os"]]

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, campaigns={len(self.campaigns)})"
