"""Landing pages of the simulated campaigns: the catalogue side and the hidden side.

An *offer* is a (campaign, page) pair, and the truth is per offer::

    logit P(sale | profile, campaign c, page p) = logit_c(profile) + effect_p(profile)

A campaign with several pages keeps its own page first (id ``default``, the
URL the same world with one page per campaign gives it; it carries no effect,
so the campaign's calibrated base rate stays its own) and gets extra pages of
a few kinds, each with the effect that kind has in real traffic:

* a language page (id: the country code, ``fr``) converts better in its
  country and worse everywhere else (a page in a foreign language);
* one-click carrier billing (``oneclick``) converts better on the carriers it
  is integrated with, and much worse without a carrier (wifi: nothing to bill);
* a form (``form``) costs everyone a little friction but works on wifi;
* a device-family page (``android``, ``ios``) suits its OS and not the other;
* a pre-lander (``pre``) lifts or lowers everyone.

Language and device pages are restricted to their audience (page targeting)
with probability ``page_targeted_share``; some extra pages are paused
(inactive), and with ``page_launch_share``/``page_retire_share`` some go live
or are retired at a whole day during the first week (the schedule: the
catalogue lists them all, ``World.catalogue_at`` says which are live when).

Pages are drawn from their own random stream, after the campaigns: a world
with pages has the campaigns, campaign truth and traffic of the same seed with
one page per campaign, and ``max_pages = 1`` draws nothing at all.
"""

from __future__ import annotations

import msgspec
import numpy as np

from clickrouter.catalogue import DEFAULT_PAGE_ID, Campaign, LandingPage, Rule
from clickrouter.sim.config import DAY, WorldConfig
from clickrouter.sim.devices import OS_NAMES
from clickrouter.sim.population import Audience, Population

# kinds of extra pages and how often each is added
PAGE_KINDS = {"lang": 0.35, "oneclick": 0.2, "form": 0.15, "device": 0.15, "pre": 0.15}
PAGE_FIELDS = ("country", "provider", "os")  # the profile fields a page effect may read
_WIFI = 0  # the provider slot of requests without a carrier
_CLIP = 2.5


class PageSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The hidden side of the pages; offers are indices into ``offers_of(campaigns)``.

    ``lift[o]`` is added to the logit of offer ``o`` for every profile (empty:
    no page has an effect). Effect ``k`` adds ``effect_coef[k]`` to the logit
    of offer ``effect_offer[k]`` when field ``effect_field[k]`` has vocabulary
    index ``effect_value[k]``. Offer ``launch_offer[k]`` goes live at
    ``launch_ts[k]`` (epoch seconds), offer ``retire_offer[k]`` stops at
    ``retire_ts[k]``; every other offer follows its catalogue ``active`` flag.
    """

    lift: list[float] = msgspec.field(default_factory=list)
    effect_offer: list[int] = msgspec.field(default_factory=list)
    effect_field: list[str] = msgspec.field(default_factory=list)
    effect_value: list[int] = msgspec.field(default_factory=list)
    effect_coef: list[float] = msgspec.field(default_factory=list)
    launch_offer: list[int] = msgspec.field(default_factory=list)
    launch_ts: list[float] = msgspec.field(default_factory=list)
    retire_offer: list[int] = msgspec.field(default_factory=list)
    retire_ts: list[float] = msgspec.field(default_factory=list)

    def problem(self, n_offers: int) -> str | None:
        """Why this spec does not fit a catalogue of ``n_offers`` offers (None: it does)."""
        if len(self.lift) not in (0, n_offers):
            return f"{len(self.lift)} page lifts for {n_offers} offers"
        columns = (self.effect_offer, self.effect_field, self.effect_value, self.effect_coef)
        if len({len(c) for c in columns}) > 1:
            return "page effect columns of different lengths"
        if len(self.launch_offer) != len(self.launch_ts):
            return "launch_offer and launch_ts of different lengths"
        if len(self.retire_offer) != len(self.retire_ts):
            return "retire_offer and retire_ts of different lengths"
        offers = [*self.effect_offer, *self.launch_offer, *self.retire_offer]
        if any(not 0 <= o < n_offers for o in offers):
            return f"a page effect or schedule names an offer outside 0..{n_offers - 1}"
        if any(f not in PAGE_FIELDS for f in self.effect_field):
            return f"page effects may only read {PAGE_FIELDS}"
        return None


def attach_pages(
    rng: np.random.Generator,
    campaigns: list[Campaign],
    population: Population,
    config: WorldConfig,
    start_ts: float,
) -> tuple[list[Campaign], PageSpec]:
    """The campaigns with their landing pages, and the pages' hidden effects and schedule.

    Campaigns left with one page keep the short form (``landing_page``).
    """
    if config.max_pages == 1:
        return campaigns, PageSpec()
    extra = np.minimum(rng.poisson(config.extra_pages_mean, len(campaigns)), config.max_pages - 1)
    builder = _PageBuilder(rng, population, config, start_ts)
    out = [builder.campaign(c, int(k)) for c, k in zip(campaigns, extra.tolist(), strict=True)]
    return out, builder.spec()


class _PageBuilder:
    """Draws the extra pages campaign by campaign, recording effects per offer."""

    def __init__(
        self, rng: np.random.Generator, population: Population, config: WorldConfig, start: float
    ) -> None:
        self.rng, self.population, self.config, self.start = rng, population, config, start
        self.scale = config.page_effect_scale
        audience = Audience(population, config)
        self.carrier_slot = audience.carrier_slot[:-1]  # the last entry is "no carrier"
        self.country_p = np.array(population.country_p)
        # a carrier's share of all traffic: its country's share x its share there
        self.carrier_country = np.array(population.carrier_country)
        self.carrier_p = self.country_p[self.carrier_country] * np.array(population.carrier_p)
        self.offer = 0
        self.lift: list[float] = []
        self.effects: tuple[list[int], list[str], list[int], list[float]] = ([], [], [], [])
        self.launch: tuple[list[int], list[float]] = ([], [])
        self.retire: tuple[list[int], list[float]] = ([], [])

    def campaign(self, campaign: Campaign, extra: int) -> Campaign:
        if extra == 0:
            self.lift.append(0.0)
            self.offer += 1
            return campaign
        url = campaign.landing_page or ""
        root = url.partition("/landing?")[0]
        pages = [LandingPage(id=DEFAULT_PAGE_ID, url=url)]
        self.lift.append(0.0)
        self.offer += 1
        share = np.array(list(PAGE_KINDS.values()))
        for kind in self.rng.choice(list(PAGE_KINDS), size=extra, p=share / share.sum()):
            page_id, targeting = getattr(self, f"_{kind}")(campaign)
            page_id = _unique(page_id, {p.id for p in pages})
            active = bool(self.rng.random() >= self.config.page_inactive_share)
            if active:
                self._schedule()
            pages.append(
                LandingPage(
                    id=page_id,
                    url=f"{root}/{page_id}?click_id={{click_id}}",
                    active=active,
                    targeting=targeting,
                )
            )
            self.offer += 1
        return msgspec.structs.replace(campaign, landing_page=None, landing_pages=tuple(pages))

    def spec(self) -> PageSpec:
        return PageSpec(
            self.lift, *self.effects, self.launch[0], self.launch[1], self.retire[0], self.retire[1]
        )

    # ---- the kinds: each records the new offer's lift and effects ----------------------------

    def _lang(self, campaign: Campaign) -> tuple[str, dict[str, Rule | list[str]]]:
        admitted = self._countries(campaign)
        p = self.country_p[admitted]
        country = admitted[int(self.rng.choice(len(admitted), p=p / p.sum()))]
        # a foreign language everywhere else, the user's own language in its country
        penalty = abs(self.rng.normal(0.4, 0.15))
        self._record(-penalty)
        self._effect("country", country + 1, penalty + self.rng.normal(0.8, 0.3))
        code = self.population.countries[country]
        return code.lower(), self._maybe_target("countries", code)

    def _oneclick(self, campaign: Campaign) -> tuple[str, dict[str, Rule | list[str]]]:
        # the carriers it bills through operate where the campaign runs
        carriers = np.flatnonzero(np.isin(self.carrier_country, self._countries(campaign)))
        k = min(int(self.rng.integers(1, 5)), len(carriers))
        p = self.carrier_p[carriers] / self.carrier_p[carriers].sum()
        for carrier in self.rng.choice(carriers, size=k, replace=False, p=p):
            self._effect("provider", int(self.carrier_slot[carrier]), self.rng.normal(0.9, 0.3))
        self._effect("provider", _WIFI, -1.5)
        self._record(self.rng.normal(0.0, 0.15))
        return "oneclick", {}

    def _form(self, campaign: Campaign) -> tuple[str, dict[str, Rule | list[str]]]:
        self._effect("provider", _WIFI, 0.4)
        self._record(self.rng.normal(-0.25, 0.2))
        return "form", {}

    def _device(self, campaign: Campaign) -> tuple[str, dict[str, Rule | list[str]]]:
        rule = campaign.rules().get("os")
        admitted = [i for i, name in enumerate(OS_NAMES) if rule is None or rule.admits(name)]
        os = admitted[int(self.rng.integers(len(admitted)))]
        self._effect("os", os + 1, self.rng.normal(0.7, 0.3))
        for other in range(len(OS_NAMES)):
            if other != os:
                self._effect("os", other + 1, -abs(self.rng.normal(0.5, 0.2)))
        self._record(0.0)
        return OS_NAMES[os], self._maybe_target("os", OS_NAMES[os])

    def _pre(self, campaign: Campaign) -> tuple[str, dict[str, Rule | list[str]]]:
        self._record(self.rng.normal(0.0, 0.5))
        return "pre", {}

    # ---- helpers ------------------------------------------------------------------------------

    def _countries(self, campaign: Campaign) -> list[int]:
        """Indices of the countries the campaign's targeting admits (all if it admits none)."""
        rule = campaign.rules().get("country")
        countries = self.population.countries
        admitted = [i for i, c in enumerate(countries) if rule is None or rule.admits(c)]
        return admitted or list(range(len(countries)))

    def _record(self, lift: float) -> None:
        self.lift.append(float(np.clip(self.scale * lift, -_CLIP, _CLIP)))

    def _effect(self, field: str, value: int, coef: float) -> None:
        offer, fields, values, coefs = self.effects
        offer.append(self.offer)
        fields.append(field)
        values.append(value)
        coefs.append(float(np.clip(self.scale * coef, -_CLIP, _CLIP)))

    def _maybe_target(self, key: str, value: str) -> dict[str, Rule | list[str]]:
        if self.rng.random() < self.config.page_targeted_share:
            return {key: Rule(allow=(value,))}
        return {}

    def _schedule(self) -> None:
        """Maybe make this page go live, or retire, at a whole day of the first week."""
        u = self.rng.random()
        when = self.start + DAY * float(self.rng.integers(1, 7))
        if u < self.config.page_launch_share:
            self.launch[0].append(self.offer)
            self.launch[1].append(when)
        elif u < self.config.page_launch_share + self.config.page_retire_share:
            self.retire[0].append(self.offer)
            self.retire[1].append(when)


def _unique(page_id: str, used: set[str]) -> str:
    candidate, n = page_id, 2
    while candidate in used:
        candidate, n = f"{page_id}-{n}", n + 1
    return candidate
