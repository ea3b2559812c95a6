"""Who sends the requests: countries, zones, carriers and devices, as tables.

:class:`Population` is plain data (saved in ``world.json``); :class:`Audience`
compiles it into numpy lookup tables and draws request columns in bulk. The
canonical vocabulary of each field (what profile extraction yields) is fixed
here, so the hidden truth and the oracle index the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np
import pycountry

from clickrouter.profile import UNKNOWN, country_zone_name, normalise_label
from clickrouter.sim.config import WorldConfig
from clickrouter.sim.devices import OS_NAMES, DeviceCatalogue, build_catalogue
from clickrouter.sim.geo import COUNTRIES
from clickrouter.sim.timeline import local_hour_weekday


class Population(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The audience's tables; list positions are the indices used everywhere else."""

    countries: list[str]  # alpha-2
    country_forms: list[list[str]]  # [alpha-2, alpha-3, numeric, English name]
    country_p: list[float]
    ios_share: list[float]
    zones: list[str]
    zone_country: list[int]
    zone_p: list[float]  # overall share of users living in the zone
    zone_is_main: list[bool]  # the zone extraction assumes for the country
    carriers: list[str]  # as requests spell them; one entry per (country, carrier)
    carrier_country: list[int]
    carrier_p: list[float]  # share within its country
    devices: DeviceCatalogue

    @classmethod
    def build(cls, rng: np.random.Generator, config: WorldConfig) -> Population:
        total = sum(spec.traffic for spec in COUNTRIES)
        zones, zone_country, zone_p = [], [], []
        carriers, carrier_country, carrier_p = [], [], []
        for i, spec in enumerate(COUNTRIES):
            share = spec.traffic / total
            for zone, fraction in spec.zones.items():
                zones.append(zone)
                zone_country.append(i)
                zone_p.append(share * fraction / sum(spec.zones.values()))
            for carrier, fraction in spec.carriers.items():
                carriers.append(carrier)
                carrier_country.append(i)
                carrier_p.append(fraction / sum(spec.carriers.values()))
        return cls(
            countries=[spec.alpha2 for spec in COUNTRIES],
            country_forms=[_country_forms(spec.alpha2) for spec in COUNTRIES],
            country_p=[spec.traffic / total for spec in COUNTRIES],
            ios_share=[spec.ios_share for spec in COUNTRIES],
            zones=zones,
            zone_country=zone_country,
            zone_p=zone_p,
            zone_is_main=[
                country_zone_name(COUNTRIES[c].alpha2) == z
                for z, c in zip(zones, zone_country, strict=True)
            ],
            carriers=carriers,
            carrier_country=carrier_country,
            carrier_p=carrier_p,
            devices=build_catalogue(rng, config.n_devices, config.device_zipf_exponent),
        )


def _country_forms(alpha2: str) -> list[str]:
    country = pycountry.countries.get(alpha_2=alpha2)
    assert country is not None, alpha2
    return [alpha2, country.alpha_3, country.numeric, country.name]


@dataclass
class Vocabulary:
    """Canonical values per field (index 0 = a value the world never produces)."""

    values: dict[str, list[str]]

    def index(self, field: str) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.values[field])}


@dataclass
class Draw:
    """Columns of drawn requests: indices into the population's tables."""

    ts_ms: np.ndarray
    zone: np.ndarray
    offset: np.ndarray  # the zone's UTC offset (s) at ts
    country: np.ndarray
    carrier: np.ndarray  # -1 = no carrier (wifi)
    device: np.ndarray
    browser: np.ndarray  # index into the catalogue's browser variants
    local_hour: np.ndarray
    local_weekday: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ms)


class Audience:
    """Numpy tables compiled from a :class:`Population` for bulk sampling."""

    def __init__(self, population: Population, config: WorldConfig) -> None:
        self.population = population
        self.config = config
        cat = population.devices
        self.zone_country = np.array(population.zone_country)
        self.ios_share = np.array(population.ios_share)
        self.device_os = np.array(cat.os_of)
        self._carrier_cdf, self._carrier_start = _grouped_cdf(
            population.carrier_country, population.carrier_p, len(population.countries)
        )
        self._device_members = [np.flatnonzero(self.device_os == o) for o in range(len(OS_NAMES))]
        popularity = np.array(cat.popularity)
        self._device_cdf = [np.cumsum(popularity[m]) for m in self._device_members]
        self._browser_cdf = np.cumsum(np.array(cat.browser_p), axis=1)
        self.vocabulary = self._vocabulary()
        self._compile_canonical_indices()

    def _vocabulary(self) -> Vocabulary:
        pop, cat = self.population, self.population.devices
        providers = dict.fromkeys(normalise_label(c) for c in pop.carriers)
        return Vocabulary(
            {
                "country": [UNKNOWN, *pop.countries],
                "device": [UNKNOWN, *cat.devices],
                "os": [UNKNOWN, *OS_NAMES],
                "browser": [UNKNOWN, *dict.fromkeys(cat.browsers)],
                "provider": [UNKNOWN, *providers],
            }
        )

    def _compile_canonical_indices(self) -> None:
        """Population index -> canonical vocabulary index, per field."""
        pop, cat = self.population, self.population.devices
        provider = self.vocabulary.index("provider")
        browser = self.vocabulary.index("browser")
        self.country_slot = np.arange(1, len(pop.countries) + 1)
        # carrier index -1 (none) lands on the last entry -> "unknown" (0)
        self.carrier_slot = np.array([provider[normalise_label(c)] for c in pop.carriers] + [0])
        self.device_slot = np.arange(1, len(cat.devices) + 1)
        self.os_slot = self.device_os + 1
        self.browser_slot = np.array([browser[b] for b in cat.browsers])

    def draw(
        self, rng: np.random.Generator, ts_ms: np.ndarray, zone: np.ndarray, offset: np.ndarray
    ) -> Draw:
        """Who is behind each arrival (time, zone and UTC offset given)."""
        n = len(ts_ms)
        country = self.zone_country[zone]
        carrier = self._carrier_start[country] + _pick(self._carrier_cdf[country], rng.random(n))
        carrier[rng.random(n) < self.config.provider_missing_rate] = -1
        is_ios = rng.random(n) < self.ios_share[country]
        device = self._devices(rng, is_ios)
        browser = _pick(self._browser_cdf[device], rng.random(n))
        hour, weekday = local_hour_weekday(ts_ms // 1000, offset)
        return Draw(ts_ms, zone, offset, country, carrier, device, browser, hour, weekday)

    def _devices(self, rng: np.random.Generator, is_ios: np.ndarray) -> np.ndarray:
        device = np.empty(len(is_ios), dtype=np.int64)
        for os_index, chosen in enumerate((~is_ios, is_ios)):
            members, cdf = self._device_members[os_index], self._device_cdf[os_index]
            picks = np.searchsorted(cdf, rng.random(int(chosen.sum())) * cdf[-1], side="right")
            device[chosen] = members[np.minimum(picks, len(members) - 1)]
        return device

    def slots(self, draw: Draw) -> dict[str, np.ndarray]:
        """Canonical vocabulary index per field (hour and weekday as themselves)."""
        return {
            "country": self.country_slot[draw.country],
            "device": self.device_slot[draw.device],
            "os": self.os_slot[draw.device],
            "browser": self.browser_slot[draw.browser],
            "provider": self.carrier_slot[draw.carrier],
            "local_hour": draw.local_hour,
            "local_weekday": draw.local_weekday,
        }


def _grouped_cdf(group: list[int], p: list[float], n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group CDF rows padded to the widest group, and each group's first index."""
    group_arr = np.array(group)
    width = int(np.bincount(group_arr, minlength=n_groups).max())
    cdf = np.ones((n_groups, width))
    start = np.zeros(n_groups, dtype=np.int64)
    for g in range(n_groups):
        rows = np.flatnonzero(group_arr == g)
        start[g] = rows[0]
        cdf[g, : len(rows)] = np.cumsum(np.array(p)[rows]) / np.sum(np.array(p)[rows])
    return cdf, start


def _pick(cdf_rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the first CDF entry above ``u``, row by row."""
    return np.minimum((u[:, None] >= cdf_rows).sum(axis=1), cdf_rows.shape[1] - 1)
