"""Traffic statistics: marginals, dependencies, diurnal and weekly shape in local time."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clickrouter.profile import country_zone_name, extract_profile, normalise_label
from clickrouter.sim import World, WorldConfig
from clickrouter.sim.geo import COUNTRIES
from clickrouter.sim.population import Draw

WEEK = 7
N = 140_000


@pytest.fixture(scope="module")
def week() -> tuple[World, list[dict[str, object]]]:
    """A week of traffic (N requests at N/7 per day) from a 30-campaign world."""
    world = World.generate(n_campaigns=30, seed=2, config=WorldConfig(requests_per_day=N / WEEK))
    draw = world.draw(np.random.default_rng(8), N)
    assert (draw.ts_ms[-1] - draw.ts_ms[0]) / 86_400_000 == pytest.approx(WEEK, abs=0.2)
    return world, world.renderer.canonical_columns(draw) | {"zone": draw.zone.tolist()}  # type: ignore[return-value]


def _subset(draw: Draw, keep: np.ndarray) -> Draw:
    return Draw(**{name: getattr(draw, name)[keep] for name in draw.__dataclass_fields__})


def _within(observed: int, n: int, p: float, slack: float = 0.0) -> bool:
    """Binomial count within 4.5 standard errors (plus a relative slack)."""
    sd = np.sqrt(n * p * (1 - p))
    return abs(observed - n * p) <= 4.5 * sd + slack * n * p


def test_countries_follow_their_traffic_shares(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    _world, cols = week
    counts = Counter(cols["country"])
    total = sum(spec.traffic for spec in COUNTRIES)
    for spec in COUNTRIES:
        # a week is 7 whole local days everywhere, up to the partial days at both ends
        assert _within(counts[spec.alpha2], N, spec.traffic / total, slack=0.03), spec.alpha2
    assert counts.most_common(1)[0][0] == "IN"


def test_carriers_are_the_countrys_own_with_their_shares(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    world, cols = week
    missing = world.config.provider_missing_rate
    for spec in COUNTRIES[:6]:
        providers = Counter(
            p for c, p in zip(cols["country"], cols["provider"], strict=False) if c == spec.alpha2
        )
        n = sum(providers.values())
        assert _within(providers["unknown"], n, missing)
        own = {normalise_label(name): share for name, share in spec.carriers.items()}
        assert set(providers) - {"unknown"} <= set(own)
        for name, share in own.items():
            assert _within(providers[name], n, (1 - missing) * share), (spec.alpha2, name)


def test_os_share_by_country_and_devices_match_their_os(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    _world, cols = week
    for spec in (COUNTRIES[0], COUNTRIES[1], COUNTRIES[9]):  # IN 4 %, US 55 %, JP 65 % iOS
        os_values = [
            o for c, o in zip(cols["country"], cols["os"], strict=False) if c == spec.alpha2
        ]
        assert _within(os_values.count("ios"), len(os_values), spec.ios_share), spec.alpha2
    for device, os_name, browser in zip(cols["device"], cols["os"], cols["browser"], strict=False):
        assert (device in ("iphone", "ipad")) == (os_name == "ios")
        if browser in ("mobile safari", "chrome mobile ios"):
            assert os_name == "ios"
        if browser == "samsung internet":
            assert device.startswith("samsung")


def test_device_popularity_is_zipf_like(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    world, cols = week
    android = Counter(d for d, o in zip(cols["device"], cols["os"], strict=False) if o == "android")
    n = sum(android.values())
    cat = world.population.devices
    ranked = [d for d, o in zip(cat.devices, cat.os_of, strict=False) if o == 0]
    popularity = [p for p, o in zip(cat.popularity, cat.os_of, strict=False) if o == 0]
    for device, p in list(zip(ranked, popularity, strict=False))[:5]:
        assert _within(android[device], n, p), device
    top = [c for _, c in android.most_common()]
    # long tail: the top 10 models carry a large share, and most models appear rarely
    assert sum(top[:10]) / n > 0.4
    assert len(android) > 150
    slope = np.polyfit(np.log(np.arange(1, 51)), np.log(top[:50]), 1)[0]
    assert slope == pytest.approx(-world.config.device_zipf_exponent, abs=0.25)


def test_diurnal_curve_in_local_time_for_every_large_zone(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    world, cols = week
    curve = np.array(world.config.diurnal_curve)
    zones = world.population.zones
    for name in ("Asia/Kolkata", "America/New_York", "Asia/Jakarta", "America/Sao_Paulo"):
        z = zones.index(name)
        hours = np.array(
            [h for h, zz in zip(cols["local_hour"], cols["zone"], strict=False) if zz == z]
        )
        hist = np.bincount(hours, minlength=24) / len(hours)
        expected = curve / curve.sum()
        sd = np.sqrt(expected * (1 - expected) / len(hours))
        assert np.all(np.abs(hist - expected) < 5 * sd), name
        assert np.corrcoef(hist, expected)[0, 1] > 0.97, name


def test_peak_hour_is_the_configured_one_in_several_zones() -> None:
    # a pronounced peak at 14:00 local: every zone must peak at 14:00 local time
    curve = tuple(1.0 if h == 14 else 0.3 + 0.02 * h for h in range(24))
    config = WorldConfig(diurnal_curve=curve, requests_per_day=40_000)
    world = World.generate(n_campaigns=5, seed=1, config=config)
    assert config.peak_hour == 14
    rng = np.random.default_rng(3)
    draw = world.draw(rng, 110_000)
    # exactly two days, so every local hour of every zone is covered equally often
    two_days = draw.ts_ms < (world.start_ts + 2 * 86_400) * 1000
    assert 0 < two_days.mean() < 1
    pairs = world.render(rng, _subset(draw, two_days))
    by_zone: dict[str, list[int]] = {}
    for raw, canon in pairs:
        zone = raw.get("tz") or country_zone_name(canon["country"])
        by_zone.setdefault(zone, []).append(canon["local_hour"])
    checked = 0
    for zone, hours in by_zone.items():
        if len(hours) > 3000:
            assert np.bincount(hours, minlength=24).argmax() == 14, zone
            checked += 1
    assert checked >= 5
    # and the hour the extractor derives from the raw timestamp agrees
    assert all(extract_profile(raw)["local_hour"] == c["local_hour"] for raw, c in pairs[:3000])


def test_weekly_seasonality(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    world, cols = week
    weights = np.array(world.config.weekday_weights)
    share = np.bincount(cols["local_weekday"], minlength=7) / N
    assert np.abs(share - weights / weights.sum()).max() < 0.006
    assert share[5] > share[0] * 1.08


def test_spread_sample_has_the_traffic_mix(week: tuple[World, dict]) -> None:  # type: ignore[type-arg]
    world, cols = week
    spread = world.draw_spread(np.random.default_rng(12), 60_000)
    span = (spread.ts_ms.max() - spread.ts_ms.min()) / 86_400_000
    assert span > 6.9
    curve = np.array(world.config.diurnal_curve)
    expected = curve / curve.sum()
    z = world.population.zones.index("Asia/Kolkata")
    hours = spread.local_hour[spread.zone == z]
    hist = np.bincount(hours, minlength=24) / len(hours)
    sd = np.sqrt(expected * (1 - expected) / len(hours))
    assert np.all(np.abs(hist - expected) < 5 * sd)
    countries = Counter(world.renderer.canonical_columns(spread)["country"])
    arrivals = Counter(cols["country"])
    for code in ("IN", "US", "ID", "BR"):
        assert countries[code] / 60_000 == pytest.approx(arrivals[code] / N, rel=0.08), code
