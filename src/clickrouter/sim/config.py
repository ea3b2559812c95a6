"""The knobs of the synthetic world, as one typed, serialisable struct.

Every number that shapes the world lives here with its default, so a world is
fully described by ``(WorldConfig, seed)`` and ``world.json`` can record it.
"""

from __future__ import annotations

import itertools

import msgspec

from clickrouter.errors import InvalidInput

HOUR = 3600.0
DAY = 86400.0
MAX_PAGES = 16  # landing pages per campaign


class DelayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sale delay distribution as CDF knots: P(delay <= seconds[i]) = cdf[i].

    Between knots the CDF is linear in log(delay), so the configured quantiles
    hold exactly; the last knot is the maximum delay (the attribution horizon).
    """

    seconds: tuple[float, ...] = (
        20.0,
        300.0,
        HOUR,
        6 * HOUR,
        DAY,
        3 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
    )
    cdf: tuple[float, ...] = (0.0, 0.12, 1 / 3, 0.42, 0.5, 0.64, 0.8, 0.9, 1.0)


class WorldConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Shape of the traffic, the campaigns and their hidden conversion functions."""

    # traffic volume and time
    requests_per_day: float = 2_000_000.0
    start: str = "2026-11-02T00:00:00Z"  # a Monday; default start of simulated time
    # relative traffic by local hour (mobile: quiet before dawn, peak in the evening)
    diurnal_curve: tuple[float, ...] = (
        0.55, 0.38, 0.25, 0.18, 0.15, 0.17, 0.25, 0.4, 0.52, 0.6, 0.65, 0.68,
        0.72, 0.72, 0.7, 0.7, 0.72, 0.76, 0.82, 0.9, 0.97, 1.0, 0.93, 0.75,
    )  # fmt: skip
    weekday_weights: tuple[float, ...] = (0.95, 0.95, 0.97, 0.98, 1.02, 1.08, 1.05)
    # users
    n_devices: int = 300  # device models; popularity is Zipf-like
    device_zipf_exponent: float = 1.1
    provider_missing_rate: float = 0.12  # requests without a carrier (wifi)
    # how raw requests spell their fields (exercises profile extraction)
    country_forms: tuple[float, float, float, float] = (0.7, 0.15, 0.1, 0.05)  # a2/a3/num/name
    user_agent_only_rate: float = 0.3  # device/os/browser given only as a user agent
    user_agent_rate: float = 0.5  # explicit fields also carry the user agent
    tz_rate: float = 0.3  # explicit tz when the user is in the country's main zone
    rfc3339_rate: float = 0.5  # ts as RFC 3339 text (else epoch seconds)
    messy_label_rate: float = 0.1  # labels in odd case / spacing
    # campaigns
    base_rate_min: float = 1e-6
    base_rate_max: float = 1e-3
    effects_per_campaign: float = 6.0  # mean number of sparse effects (Poisson)
    effect_mean: float = 0.4  # logit effects ~ N(mean, scale), clipped to +-2.5
    effect_scale: float = 0.8
    hour_effect_amplitude: float = 1.0  # max amplitude of a campaign's hour-of-day bump
    # share of the variance of a campaign's profile effects that its vertical's effects
    # carry (0: every campaign independent; 1: every campaign of a vertical alike)
    shared_structure: float = 0.0
    payout_median: float = 8.0
    payout_sigma: float = 1.0
    inactive_share: float = 0.05
    country_allow_share: float = 0.3
    country_deny_share: float = 0.05
    os_allow_share: float = 0.15
    # landing pages: a campaign runs 1 + min(Poisson(extra_pages_mean), max_pages - 1)
    # pages; max_pages = 1 is one page per campaign (the catalogue's short form)
    max_pages: int = 1
    extra_pages_mean: float = 0.7
    page_effect_scale: float = 1.0  # multiplies every page effect (0: pages differ in name only)
    page_targeted_share: float = 0.3  # language and device pages restricted to their audience
    page_inactive_share: float = 0.05  # extra pages paused in the catalogue
    page_launch_share: float = 0.0  # extra pages that go live during the first week
    page_retire_share: float = 0.0  # extra pages retired during the first week
    delays: DelayConfig = DelayConfig()

    @property
    def peak_hour(self) -> int:
        """Local hour with the most traffic."""
        return max(range(24), key=self.diurnal_curve.__getitem__)

    def validated(self) -> WorldConfig:
        """Self, after checking every knob; raises :class:`InvalidInput` naming the bad one."""
        _check(self.requests_per_day > 0, "requests_per_day", self.requests_per_day)
        _check(len(self.diurnal_curve) == 24, "diurnal_curve", self.diurnal_curve)
        _check(min(self.diurnal_curve) > 0, "diurnal_curve", self.diurnal_curve)
        _check(len(self.weekday_weights) == 7, "weekday_weights", self.weekday_weights)
        _check(min(self.weekday_weights) > 0, "weekday_weights", self.weekday_weights)
        _check(self.n_devices >= 10, "n_devices", self.n_devices)
        _check(abs(sum(self.country_forms) - 1) < 1e-9, "country_forms", self.country_forms)
        _check(1 <= self.max_pages <= MAX_PAGES, "max_pages", self.max_pages)
        _check(self.extra_pages_mean >= 0, "extra_pages_mean", self.extra_pages_mean)
        _check(self.page_effect_scale >= 0, "page_effect_scale", self.page_effect_scale)
        _check(
            self.page_launch_share + self.page_retire_share <= 1,
            "page_launch_share + page_retire_share",
            (self.page_launch_share, self.page_retire_share),
        )
        _check(
            0 < self.base_rate_min <= self.base_rate_max < 0.5,
            "base_rate_min/base_rate_max",
            (self.base_rate_min, self.base_rate_max),
        )
        for name in _RATES:
            value = getattr(self, name)
            _check(0 <= value <= 1, name, value)
        _check_delays(self.delays)
        return self


_RATES = (
    "provider_missing_rate",
    "user_agent_only_rate",
    "user_agent_rate",
    "tz_rate",
    "rfc3339_rate",
    "messy_label_rate",
    "shared_structure",
    "inactive_share",
    "country_allow_share",
    "country_deny_share",
    "os_allow_share",
    "page_targeted_share",
    "page_inactive_share",
    "page_launch_share",
    "page_retire_share",
)


def _check_delays(delays: DelayConfig) -> None:
    seconds, cdf = delays.seconds, delays.cdf
    _check(len(seconds) == len(cdf) >= 2, "delays", delays)
    _check(all(a < b for a, b in itertools.pairwise(seconds)), "delays.seconds", seconds)
    _check(seconds[0] > 0, "delays.seconds", seconds)
    _check(all(a <= b for a, b in itertools.pairwise(cdf)), "delays.cdf", cdf)
    _check(cdf[0] == 0 and cdf[-1] == 1, "delays.cdf", cdf)


def _check(ok: bool, name: str, value: object) -> None:
    if not ok:
        raise InvalidInput(f"world config: invalid {name}: {value!r}")
