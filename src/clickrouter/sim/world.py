"""World: the synthetic ad network with its hidden truth, and the oracle API.

A world is generated from ``(WorldConfig, seed, n_campaigns)`` and saved as a
directory holding the campaign catalogue (``campaigns.json``, the model
directory format the predictor serves) and the hidden truth (``world.json``:
config, audience tables, conversion effects (each campaign's own and its
vertical's), page effects and schedule). Everything else (timeline, samplers,
dense effect tables) is rebuilt from those two files; a ``world.json``
without pages is a world with one page per campaign, one without vertical
effects a world of independent campaigns.

What is chosen, valued and made eligible is an *offer*, a (campaign, landing
page) pair: ``offers`` lists them as ``offers_of(campaigns)`` does (campaign by
campaign, pages in catalogue order), and every per-offer array (``payouts``,
the truth, eligibility) has one column per offer in that order. With one page
per campaign, offer ``i`` is campaign ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.catalogue import DEFAULT_PAGE_ID, Campaign, load_catalog, offers_of, write_catalog
from clickrouter.errors import InvalidInput
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_DOMAINS, parse_timestamp
from clickrouter.sim.campaigns import build_campaigns, vertical_groups
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.delays import DelayModel
from clickrouter.sim.pages import PageSpec, attach_pages
from clickrouter.sim.population import Audience, Draw, Population
from clickrouter.sim.requests import RequestRenderer
from clickrouter.sim.timeline import Timeline
from clickrouter.sim.truth import SharedDraw, Truth, TruthSpec, generate_truth, sigmoid

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
    pages: PageSpec = msgspec.field(default_factory=PageSpec)


class World:
    """Traffic, campaigns, their offers and the true P(sale) of every (profile, offer) pair."""

    def __init__(
        self,
        config: WorldConfig,
        seed: int,
        population: Population,
        campaigns: list[Campaign],
        truth: TruthSpec | None = None,
        pages: PageSpec | None = None,
    ) -> None:
        self.config = config.validated()
        self.seed = seed
        self.population = population
        self.campaigns = campaigns
        self.campaign_ids = [c.id for c in campaigns]
        self.campaign_index = {cid: i for i, cid in enumerate(self.campaign_ids)}
        self._offer_tables(pages or PageSpec())
        self.audience = Audience(population, self.config)
        self.timeline = Timeline(population.zones, np.array(population.zone_p), self.config)
        self.renderer = RequestRenderer(self.audience)
        self.delays = DelayModel(self.config.delays)
        self.start_ts = parse_timestamp(self.config.start)
        self._slot_index = {f: self.audience.vocabulary.index(f) for f in CATEGORICAL_FIELDS}
        self._eligibility_tables()
        if truth is None:
            truth = self._draw_truth()
        problem = truth.problem(self.sizes)
        if problem is not None:
            raise InvalidInput(f"world: the hidden truth does not fit the audience: {problem}")
        self.truth = Truth(truth, self.sizes, self.pages, self.offer_campaign)

    def _offer_tables(self, pages: PageSpec) -> None:
        self.offers = offers_of(self.campaigns)
        problem = pages.problem(len(self.offers))
        if problem is not None:
            raise InvalidInput(f"world: page effects do not fit the catalogue: {problem}")
        self.pages = pages
        self.offer_campaign = np.repeat(
            np.arange(len(self.campaigns)), [len(c.pages) for c in self.campaigns]
        )
        # a campaign's offers are contiguous: its first offer and how many it has
        self.offer_count = np.bincount(self.offer_campaign, minlength=len(self.campaigns))
        self.offer_start = np.concatenate([[0], np.cumsum(self.offer_count)[:-1]]).astype(np.int64)
        self.page_ids = [o.page.id for o in self.offers]
        self._offer_lookup = {(o.campaign.id, o.page.id): i for i, o in enumerate(self.offers)}
        self.payouts = np.array([o.campaign.payout for o in self.offers])
        self._schedule = _Schedule(pages)

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
        # pages from a stream of their own: the campaigns and traffic stay those of one page each
        campaigns, pages = attach_pages(
            np.random.default_rng([seed, 6]),
            campaigns,
            population,
            config,
            parse_timestamp(config.start),
        )
        return cls(config, seed, population, campaigns, pages=pages)

    def _draw_truth(self) -> TruthSpec:
        rng = np.random.default_rng([self.seed, 2])
        sample = self.audience.slots(self.draw_spread(rng, _CALIBRATION_ROWS))
        # a campaign's base rate is over the traffic the campaign itself admits
        active, country_ok, os_ok = self._campaign_eligibility
        eligible = active & country_ok[sample["country"]] & os_ok[sample["os"]]
        # the verticals' effects from a stream of their own: the campaigns' own stay those of s = 0
        shared = SharedDraw(np.random.default_rng([self.seed, 7]), *vertical_groups(self.campaigns))
        return generate_truth(rng, self.config, sample, eligible, self.sizes, shared)

    # ---- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``campaigns.json`` and ``world.json`` into ``directory``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        write_catalog(root / CATALOG_FILE, self.campaigns)
        document = WorldFile(
            FORMAT_VERSION, self.seed, self.config, self.population, self.truth.spec, self.pages
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
        problem = document.pages.problem(len(offers_of(campaigns)))
        if problem is not None:
            raise InvalidInput(f"{root / CATALOG_FILE}: does not match {WORLD_FILE}: {problem}")
        return cls(
            document.config,
            document.seed,
            document.population,
            campaigns,
            document.truth,
            document.pages,
        )

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

    def offer_index(
        self, campaign_ids: Sequence[str], page_ids: Sequence[str] | None = None
    ) -> np.ndarray:
        """The offer index of each (campaign id, page id) pair; -1 where the world has none.

        ``page_ids`` None means every row's page is ``default`` (click events
        logged before pages existed).
        """
        if page_ids is None:
            page_ids = [DEFAULT_PAGE_ID] * len(campaign_ids)
        lookup = self._offer_lookup
        return np.fromiter(
            (lookup.get(pair, -1) for pair in zip(campaign_ids, page_ids, strict=True)),
            dtype=np.int64,
            count=len(campaign_ids),
        )

    def true_proba(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """True P(sale) for every offer; shape (n_profiles, n_offers), offer order.

        Defined for every offer, eligible or not (see :meth:`eligible`).
        """
        return sigmoid(self.truth.logits(self.slots_of(profiles)))

    def true_proba_slots(self, slots: dict[str, np.ndarray], offer: np.ndarray) -> np.ndarray:
        """True P(sale) of one offer (index) per row of vocabulary slots; shape (n,)."""
        return sigmoid(self.truth.logits_for(slots, offer))

    def eligible(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """Offers shown to each profile; (n_profiles, n_offers), the catalogue's activity."""
        return self.eligible_slots(self.slots_of(profiles))

    def eligible_slots(
        self, slots: dict[str, np.ndarray], ts: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, n_offers): campaign and page active, and both their targetings admit the row.

        With ``ts`` (epoch seconds per row), pages the schedule launches later or
        has retired by then are not eligible either.
        """
        eligible = self.active & self.country_ok[slots["country"]] & self.os_ok[slots["os"]]
        if ts is not None:
            self._schedule.restrict(eligible, np.asarray(ts, dtype=np.float64))
        return eligible

    # ---- the page schedule --------------------------------------------------------------

    @property
    def change_times(self) -> np.ndarray:
        """Sorted epoch seconds at which a page goes live or is retired (empty: none)."""
        return self._schedule.times

    def live_epoch(self, ts: np.ndarray) -> np.ndarray:
        """Per time (epoch s), the number of schedule changes by then (same epoch, same pages)."""
        return np.searchsorted(self._schedule.times, np.asarray(ts, dtype=np.float64), "right")

    def live_offers(self, epoch: int) -> np.ndarray:
        """(n_offers,) bool: offers the schedule lets be shown during ``epoch``."""
        return self._schedule.live(epoch, len(self.offers))

    def catalogue_at(self, ts: float) -> list[Campaign]:
        """The catalogue to serve at ``ts``: pages not live then are marked inactive."""
        live = self.live_offers(int(self.live_epoch(np.array([ts]))[0]))
        out = []
        for c, campaign in enumerate(self.campaigns):
            start, count = int(self.offer_start[c]), int(self.offer_count[c])
            if campaign.landing_pages is None or live[start : start + count].all():
                out.append(campaign)
                continue
            pages = tuple(
                page if live[start + k] else msgspec.structs.replace(page, active=False)
                for k, page in enumerate(campaign.landing_pages)
            )
            out.append(msgspec.structs.replace(campaign, landing_pages=pages))
        return out

    def _eligibility_tables(self) -> None:
        vocab = self.audience.vocabulary.values
        active = np.array([c.active for c in self.campaigns], dtype=bool)
        country_ok = np.ones((len(vocab["country"]), len(self.campaigns)), dtype=bool)
        os_ok = np.ones((len(vocab["os"]), len(self.campaigns)), dtype=bool)
        for j, campaign in enumerate(self.campaigns):
            rules = campaign.rules()
            if "country" in rules:
                country_ok[:, j] = [rules["country"].admits(v) for v in vocab["country"]]
            if "os" in rules:
                os_ok[:, j] = [rules["os"].admits(v) for v in vocab["os"]]
        self._campaign_eligibility = (active, country_ok, os_ok)
        # an offer: its campaign's rules, and its page's own (most pages have none)
        to_campaign = self.offer_campaign
        self.active = active[to_campaign] & [o.page.active for o in self.offers]
        self.country_ok = country_ok[:, to_campaign]
        self.os_ok = os_ok[:, to_campaign]
        for j, offer in enumerate(self.offers):
            rules = offer.page.rules()
            if "country" in rules:
                self.country_ok[:, j] &= [rules["country"].admits(v) for v in vocab["country"]]
            if "os" in rules:
                self.os_ok[:, j] &= [rules["os"].admits(v) for v in vocab["os"]]

    def __repr__(self) -> str:
        return (
            f"World(seed={self.seed}, campaigns={len(self.campaigns)}, offers={len(self.offers)})"
        )


class _Schedule:
    """When scheduled pages are live: launched ones from their time, retired ones until theirs."""

    def __init__(self, pages: PageSpec) -> None:
        self.launch_offer = np.array(pages.launch_offer, dtype=np.int64)
        self.launch_ts = np.array(pages.launch_ts, dtype=np.float64)
        self.retire_offer = np.array(pages.retire_offer, dtype=np.int64)
        self.retire_ts = np.array(pages.retire_ts, dtype=np.float64)
        self.times = np.unique(np.concatenate([self.launch_ts, self.retire_ts]))
        self._live: dict[int, np.ndarray] = {}

    def restrict(self, eligible: np.ndarray, ts: np.ndarray) -> None:
        """Clear, in place, the offers of each row that are not live at its time."""
        if len(self.launch_offer):
            eligible[:, self.launch_offer] &= ts[:, None] >= self.launch_ts[None, :]
        if len(self.retire_offer):
            eligible[:, self.retire_offer] &= ts[:, None] < self.retire_ts[None, :]

    def live(self, epoch: int, n_offers: int) -> np.ndarray:
        cached = self._live.get(epoch)
        if cached is None:
            # any time within the epoch: its start (or before the first change)
            at = self.times[epoch - 1] if epoch > 0 else -np.inf
            cached = np.ones(n_offers, dtype=bool)
            cached[self.launch_offer] = at >= self.launch_ts
            cached[self.retire_offer] = at < self.retire_ts
            self._live[epoch] = cached
        return cached
